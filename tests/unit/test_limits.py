"""What the event contract refuses, so that no single event can stop the worker."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import DBAPIError

from classifier.consumer.runner import failure_summary
from classifier.engine.scheme import SchemeError, load_scheme_text
from eventschemas.envelope import Envelope
from eventschemas.events import OrderPlaced, parse_event
from eventschemas.limits import (
    RevisionIn,
    check_formula_safe,
    check_id,
    check_instant,
    check_json,
    check_text,
)
from eventschemas.logs import RateLimit


@pytest.mark.parametrize("bad", ["a\x00b", "tab\there", "line\nbreak", "bell\x07", "\ud800"])
def test_ids_refuse_control_characters_and_lone_surrogates(bad: str) -> None:
    with pytest.raises(ValueError, match="control character U\\+"):
        check_id(bad)


def test_free_text_keeps_tabs_and_newlines_but_not_nul() -> None:
    assert check_text("line one\n\tline two\r\n") == "line one\n\tline two\r\n"
    with pytest.raises(ValueError, match="U\\+0000 at position 4"):
        check_text("note\x00")


@pytest.mark.parametrize(
    "instant",
    [
        datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # overflowed from_micros
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_instants_outside_the_plausible_range_are_refused(instant: datetime) -> None:
    with pytest.raises(ValueError, match="between 1970-01-01 and 2100-01-01"):
        check_instant(instant)


def test_json_values_are_checked_deeply_and_bounded() -> None:
    assert check_json({"industry": "retail", "n": [1, 2.5, None, True]})
    with pytest.raises(ValueError, match="U\\+0000"):
        check_json({"a": [{"b": "x\x00"}]})
    with pytest.raises(ValueError, match="U\\+0000"):
        check_json({"k\x00": 1})
    with pytest.raises(ValueError, match="64 bits"):
        check_json({"big": 2**70})
    deep: object = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        check_json(deep)


def test_http_revision_is_a_strict_bounded_integer() -> None:
    revision = TypeAdapter(RevisionIn)
    assert revision.validate_json("3") == 3
    for bad in ("true", '"3"', str(2**70), "-1", "2.5"):
        with pytest.raises(ValidationError):
            revision.validate_json(bad)


def _order_envelope(**data: object) -> bytes:
    event = OrderPlaced(
        customer_id="c1",
        order_id="o1",
        amount="10",  # type: ignore[arg-type]
        currency="USD",
        amount_base="10",  # type: ignore[arg-type]
        base_currency="USD",
        placed_at=datetime(2026, 11, 20, tzinfo=UTC),
    )
    envelope = event.to_envelope("test").model_dump(mode="json")
    envelope["data"].update(data)
    return json.dumps(envelope).encode()  # json: orjson refuses integers beyond 64 bits


@pytest.mark.parametrize(
    "data",
    [
        {"customer_id": "c\x00"},
        {"order_id": "o\x00"},
        {"placed_at": "0001-01-01T00:30:00+01:00"},
        {"revision": 2**70},
    ],
)
def test_the_worker_decoder_refuses_what_would_stop_it(data: dict[str, object]) -> None:
    raw = _order_envelope(**data)
    with pytest.raises(ValidationError):
        parse_event(Envelope.from_bytes(raw))


def test_an_envelope_time_of_year_one_is_refused() -> None:
    envelope = json.loads(_order_envelope())
    envelope["time"] = "0001-01-01T00:00:00Z"
    with pytest.raises(ValidationError, match="between 1970-01-01"):
        Envelope.from_bytes(json.dumps(envelope).encode())


def test_deeply_nested_schemes_are_a_scheme_error_not_a_crash() -> None:
    for text in ("[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        with pytest.raises(SchemeError, match="nested deeper than 64"):
            load_scheme_text(text)


def test_kafka_client_log_lines_are_rate_limited() -> None:
    limit = RateLimit(seconds=60)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("node-1",), None)

    passed = [limit.filter(record("aiokafka.conn", "Unable connect to %s")) for _ in range(2500)]
    assert passed.count(True) == 1
    # Other templates and other loggers are not affected.
    assert limit.filter(record("aiokafka.conn", "Another message %s"))
    assert all(limit.filter(record("classifier.worker", "x %s")) for _ in range(10))
    # The count of what was suppressed is carried by the next line that passes.
    limit.seconds = 0
    line = record("aiokafka.conn", "Unable connect to %s")
    assert limit.filter(line)
    assert "2499 similar suppressed" in line.getMessage()


@pytest.mark.parametrize("value", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\t=1", "\rx"])
def test_formula_like_ids_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="formula"):
        check_formula_safe(value)


@pytest.mark.parametrize("value", ["SO-1", "cust=42", "a+b", "id-e-00ff", "1e5"])
def test_ids_with_such_characters_inside_are_kept(value: str) -> None:
    assert check_formula_safe(value) == value


def test_a_dead_letter_names_the_failure_without_the_statement_parameters() -> None:
    orig = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence 0x00")
    wrapped = DBAPIError("INSERT ...", {"facts": "+8613800138000"}, orig)
    summary = failure_summary(wrapped)
    assert "+8613800138000" not in summary
    assert "DBAPIError" in summary
    assert "SQLSTATE 22021" in summary
    assert failure_summary(ValueError("note: call +8613800138000")) == "ValueError"
