"""Structured JSON logs. Messages never carry personal data (ids only)."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class RateLimit(logging.Filter):
    """At most one record per `seconds` for each message template of the Kafka client.

    While the broker is down, aiokafka logs every failed connection attempt
    (thousands of lines a second); the first of a kind passes, the rest are
    counted and the count is added to the next one that passes.
    """

    def __init__(self, seconds: float = 10.0, prefixes: tuple[str, ...] = ("aiokafka",)) -> None:
        super().__init__()
        self.seconds = seconds
        self.prefixes = prefixes
        self._last: dict[tuple[str, int, str], float] = {}
        self._suppressed: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        if len(self._last) > 1000:  # templates are few; bound the memory anyway
            self._last = {key: now}
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar suppressed)"
        return True


class BrokerWarmUp(logging.Filter):
    """Logs the Kafka client's coordinator errors of a broker's first moments as info.

    Right after a broker (re)starts, the group coordinator is not elected yet:
    aiokafka logs `GroupCoordinatorNotAvailableError` as an error on every
    start and retries the lookup by itself (`retry_backoff_ms`). It is normal,
    not a failure; a broker that stays away shows in the connection warnings.
    """

    TRANSIENT = (
        "GroupCoordinatorNotAvailableError",
        "CoordinatorLoadInProgressError",
        "NotCoordinatorForGroupError",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith("aiokafka"):
            text = record.getMessage()
            if any(name in text for name in self.TRANSIENT):
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.msg, record.args = f"{text} (broker warming up; retrying)", None
        return True


def configure_logging(level: str = "INFO") -> None:
    # One line per record, written at once: nothing is lost if the process is killed.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(BrokerWarmUp())
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
