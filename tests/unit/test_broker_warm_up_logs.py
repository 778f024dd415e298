"""The Kafka client's coordinator errors of a broker's first moments are logged as info."""

from __future__ import annotations

import io
import json
import logging

from eventschemas.logs import BrokerWarmUp, JsonFormatter


def _emit(name: str, level: int, msg: str, *args: object) -> dict[str, str]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(BrokerWarmUp())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.log(level, msg, *args)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return dict(json.loads(out.getvalue()))


def test_group_coordinator_not_available_at_start_is_info_not_error() -> None:
    line = _emit(
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        "Group Coordinator Request failed: %s",
        "[Error 15] GroupCoordinatorNotAvailableError",
    )

    assert line["level"] == "info"
    assert "GroupCoordinatorNotAvailableError" in line["msg"]
    assert "retrying" in line["msg"]


def test_other_client_errors_stay_errors() -> None:
    line = _emit("aiokafka.consumer.group_coordinator", logging.ERROR, "Unexpected error")

    assert line["level"] == "error"
