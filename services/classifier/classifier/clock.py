"""The injectable clock: epoch microseconds now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from classifier.engine import to_micros

Clock = Callable[[], int]


def system_clock(offset_seconds: float = 0.0, frozen_at: datetime | None = None) -> Clock:
    """Wall-clock time, optionally shifted or frozen (tests and demos move time)."""
    if frozen_at is not None:
        fixed = to_micros(frozen_at)
        return lambda: fixed
    offset = int(offset_seconds * 1_000_000)

    def now() -> int:
        return to_micros(datetime.now(UTC)) + offset

    return now
