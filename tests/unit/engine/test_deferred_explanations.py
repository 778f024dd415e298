"""Explanations are built once per customer per batch (CustomerState.materialize), not at
every evaluation: wherever the batch boundaries fall, the stored classes, explanations
(`next`, `changes_at`, checks, basis) and changes equal building each one at once."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.engine.facts import CustomerFacts, Fact, from_micros
from classifier.processing import state as state_module
from classifier.processing.state import (
    Change,
    CustomerState,
    apply_event,
    review_until,
)
from eventschemas.envelope import Envelope
from tests.unit.engine.builders import DEFAULT
from tests.unit.engine.test_bounded_state import DAY, facts

CUTOFFS = {"abc_tier": {"A": 5000.0, "B": 1000.0}}


def envelope(fact: Fact, n: int) -> Envelope:
    return Envelope(
        id=f"e{n}",
        source="test",
        type="test.fact",
        subject="p",
        time=from_micros(fact.seen),
        dataschema="test",
        data={},
    )


def worked(delivered: list[Fact], boundaries: set[int], later: int) -> tuple[Any, list[Change]]:
    """As the worker applies events (apply_event: catch up on time, fold the fact,
    re-evaluate the dimensions reading what it changed); a batch ends after each
    position in `boundaries` and at the end, where the state is settled."""
    state = CustomerState("p", CustomerFacts("p"))
    changes: list[Change] = []
    for n, fact in enumerate(delivered):
        changes += apply_event(state, DEFAULT, envelope(fact, n), fact, cutoffs=CUTOFFS)
        if n in boundaries:
            state.materialize()
    if state.evaluated_at is not None:  # a time-driven review batch afterwards
        changes += review_until(state, DEFAULT, state.evaluated_at + later * DAY, cutoffs=CUTOFFS)
    state.materialize()
    assert not state.pending
    return state.classes, changes


def built_at_once(delivered: list[Fact], later: int) -> tuple[Any, list[Change]]:
    """The reference: every explanation built right after its evaluation, on the facts
    of that moment, as before explanations were deferred (review steps included)."""
    evaluate_and_build = state_module.reclassify

    def eager(state: CustomerState, *args: Any, **kwargs: Any) -> list[Change]:
        changes = evaluate_and_build(state, *args, **kwargs)
        state.materialize()
        return changes

    with patch.object(state_module, "reclassify", eager):
        return worked(delivered, set(), later)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts(), st.sets(st.integers(0, 40)), st.integers(0, 500))
def test_explanations_built_at_the_end_of_a_batch_equal_those_built_at_once(
    delivered: list[Fact], boundaries: set[int], later: int
) -> None:
    at_once, changes_at_once = built_at_once(delivered, later)
    deferred, changes_deferred = worked(delivered, boundaries, later)
    assert deferred == at_once
    assert changes_deferred == changes_at_once
    assert all(c["explanation"] is not None for c in deferred.values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts(), st.sets(st.integers(0, 40)), st.integers(0, 500))
def test_the_same_when_a_long_detail_builds_them_before_the_next_fact(
    delivered: list[Fact], boundaries: set[int], later: int
) -> None:
    """Past SNAPSHOT_MAX_DETAIL orders and calls, pending explanations are built before a
    fact changes what they read instead of keeping a snapshot: the same outcome."""
    at_once, changes_at_once = built_at_once(delivered, later)
    with patch.object(state_module, "SNAPSHOT_MAX_DETAIL", 0):
        deferred, changes_deferred = worked(delivered, boundaries, later)
    assert deferred == at_once
    assert changes_deferred == changes_at_once


def test_the_explanations_of_reviews_a_later_review_replaces_are_never_built() -> None:
    """A customer whose classes change by themselves several times before the next event
    (recency thresholds passing): only the last review's explanations are built."""
    start = 1_700_000_000_000_000
    state = CustomerState("p", CustomerFacts("p"))
    fact = Fact("order", "o1", start, start, {"a": 120.0, "s": "paid", "r": 0})
    apply_event(state, DEFAULT, envelope(fact, 0), fact, cutoffs=CUTOFFS)
    state.materialize()
    results: list[Any] = []
    steps = 0
    while state.next_review_at is not None and state.next_review_at < start + 800 * DAY:
        review_until(state, DEFAULT, state.next_review_at, cutoffs=CUTOFFS)  # one instant
        results += [result for result, _ in state.pending.values()]
        steps += 1
    assert steps >= 2
    last = {id(result) for result, _ in state.pending.values()}
    state.materialize()
    replaced = [r for r in results if id(r) not in last]
    assert replaced
    assert all(r._explanation is None for r in replaced)  # never built
    assert all(c["explanation"] is not None for c in state.classes.values())
