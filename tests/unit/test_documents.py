"""Rendered customer documents without I/O: the bytes as stored, and as a read sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from classifier.engine import from_micros, to_micros
from classifier.processing.documents import present, render

DAY = 86_400_000_000
EVALUATED = to_micros(datetime(2026, 11, 1, tzinfo=UTC))


def explanation(recency: int) -> dict[str, Any]:
    return {
        "summary": f"occasional: recency_days = {recency} ≤ 365 and orders_365d = 1 ≥ 1",
        "checks": [
            {"feature": "recency_days", "op": "lte", "value": 365, "actual": recency},
            {"feature": "orders_365d", "op": "gte", "value": 1, "actual": 1},
        ],
        "features": {"recency_days": recency, "orders_365d": 1},
        "next": {"class": "loyal"},
        "basis": {"kept": "for the worker"},
    }


def customer(**overrides: Any) -> dict[str, Any]:
    return {
        "classes": {
            "purchase_behavior": {
                "class": "occasional",
                "since": EVALUATED - DAY,
                "scheme_version": 3,
                "rule": "occasional",
                "explanation": explanation(4),
            }
        },
        "features": {"recency_days": 4, "orders_365d": 1, "lead_score": 30.0, "industry": None},
        "motion": {
            "recency_days": ["age", EVALUATED - 4 * DAY],
            "lead_score": ["decay", 30.0, EVALUATED, 30 * DAY],
        },
        "overrides": {},
        "scheme_version": 3,
        "evaluated_at": from_micros(EVALUATED),
    } | overrides


def read(body: bytes, slots: Any, motion: Any, now: int | None, due: bool = False) -> Any:
    return orjson.loads(present(body, slots, motion, now, due))


def test_a_read_shows_the_moving_values_as_of_its_instant_everywhere_they_appear() -> None:
    c = customer()
    body, slots = render(**c)
    now = EVALUATED + 26 * DAY

    doc = read(body, slots, c["motion"], now)

    behaviour = doc["classes"]["purchase_behavior"]
    explained = behaviour["explanation"]
    assert explained["summary"] == "occasional: recency_days = 30 ≤ 365 and orders_365d = 1 ≥ 1"
    assert [check["actual"] for check in explained["checks"]] == [30, 1]
    assert explained["features"] == {"recency_days": 30, "orders_365d": 1}
    assert doc["features"]["recency_days"] == 30
    assert doc["features"]["lead_score"] == 30.0 * 2 ** (-26 / 30)
    assert doc["features"]["industry"] is None
    # What the class answer shows beside the explanation, or the worker keeps, is not in it.
    assert "next" not in explained
    assert "basis" not in explained
    assert behaviour["next"] == {"class": "loyal"}


def test_at_the_evaluation_or_once_the_review_is_due_the_values_are_as_evaluated() -> None:
    c = customer()
    body, slots = render(**c)

    evaluated = read(body, slots, c["motion"], EVALUATED)
    assert evaluated["features"] == c["features"]
    checks = evaluated["classes"]["purchase_behavior"]["explanation"]["checks"]
    assert [check["actual"] for check in checks] == [4, 1]
    # A review that is due and not done: the values stay as evaluated, like the class.
    assert read(body, slots, c["motion"], EVALUATED + 400 * DAY, due=True) == evaluated
    # With no instant, nothing moves.
    assert read(body, slots, c["motion"], None) == evaluated


def test_an_override_is_active_until_it_expires() -> None:
    expires = EVALUATED + 10 * DAY
    overrides = {
        "value": {"class": "vip", "reason": "r", "expires_at": expires, "set_at": EVALUATED},
        "abc_tier": {"class": "A", "reason": "r", "expires_at": None, "set_at": EVALUATED},
    }
    c = customer(overrides=overrides, motion={})
    body, slots = render(**c)

    before = read(body, slots, {}, expires - 1)["overrides"]
    after = read(body, slots, {}, expires)["overrides"]

    assert before["value"]["active"] is True
    assert after["value"]["active"] is False
    assert before["abc_tier"]["active"] is True
    assert after["abc_tier"]["active"] is True
    assert before["value"]["expires_at"] == "2026-11-11T00:00:00Z"


def test_a_customer_with_nothing_moving_is_plain_json() -> None:
    c = customer(motion={})
    body, slots = render(**c)

    assert slots is None
    assert present(body, slots, {}, EVALUATED + DAY, False) == body
    assert orjson.loads(body)["classes"]["purchase_behavior"]["since"] == "2026-10-31T00:00:00Z"


@given(
    recency=st.integers(min_value=0, max_value=10_000),
    later=st.integers(min_value=0, max_value=10_000),
    text=st.text(max_size=30),
)
def test_any_values_and_texts_round_trip(recency: int, later: int, text: str) -> None:
    # Texts from the scheme or a CRM (quotes, escapes, markers' look-alikes) stay as they were.
    c = customer(motion={"recency_days": ["age", EVALUATED - recency * DAY]})
    c["features"] = {**c["features"], "recency_days": recency, "industry": text}
    c["classes"]["purchase_behavior"]["explanation"] = explanation(recency)
    c["classes"]["purchase_behavior"]["rule"] = text
    body, slots = render(**c)

    doc = read(body, slots, c["motion"], EVALUATED + later * DAY)

    assert doc["features"]["recency_days"] == recency + later
    assert doc["features"]["industry"] == text
    assert doc["classes"]["purchase_behavior"]["rule"] == text
    summary = doc["classes"]["purchase_behavior"]["explanation"]["summary"]
    assert f"recency_days = {recency + later} " in summary


@given(
    recency=st.integers(min_value=0, max_value=10_000),
    later=st.integers(min_value=-5, max_value=10_000),
    expiry=st.integers(min_value=-3, max_value=3),
    text=st.text(max_size=30),
    due=st.booleans(),
)
def test_the_offsets_kept_at_render_give_what_replacing_the_markers_gives(
    recency: int, later: int, expiry: int, text: str, due: bool
) -> None:
    # A read cuts the document at the markers' offsets; a document stored before the
    # offsets were kept (slots without "o") is read by replacing its markers: the same bytes.
    overrides = {
        "value": {
            "class": text,
            "reason": text,
            "expires_at": EVALUATED + expiry * DAY,
            "set_at": EVALUATED,
        },
    }
    c = customer(overrides=overrides)
    c["features"] = {**c["features"], "recency_days": recency, "industry": text}
    c["classes"]["purchase_behavior"]["explanation"] = explanation(recency)
    c["classes"]["purchase_behavior"]["explanation"]["summary"] += text
    body, slots = render(**c)
    assert slots is not None
    legacy = {k: v for k, v in slots.items() if k != "o"}
    now = EVALUATED + later * DAY

    cut = present(body, slots, c["motion"], now, due)

    assert cut == present(body, legacy, c["motion"], now, due)
    assert b"@" + slots["n"].encode() not in cut
    assert orjson.loads(cut)["overrides"]["value"]["active"] is (expiry > later)
