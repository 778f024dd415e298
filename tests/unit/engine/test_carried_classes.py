"""Activating a scheme that changes one dimension re-evaluates that dimension (and the
population ranks), and ends in the same classes as evaluating every dimension anew."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.engine import CompiledScheme, default_scheme_text, parse_scheme
from classifier.engine.facts import CustomerFacts, Fact
from classifier.processing.state import CustomerState, reclassify, review_until
from eventschemas.changes import ChangeReason
from tests.unit.engine.builders import DEFAULT
from tests.unit.engine.test_bounded_state import DAY, facts

THRESHOLD = ("- {feature: orders_365d, gte: 4}", "- {feature: orders_365d, gte: 3}")
CUTOFFS = {"abc_tier": {"A": 5000.0, "B": 1000.0}}


def changed_scheme(version: int = 2) -> CompiledScheme:
    source = default_scheme_text()
    assert THRESHOLD[0] in source, "the default scheme changed; update THRESHOLD"
    scheme = parse_scheme(source.replace(*THRESHOLD))
    scheme.spec = scheme.spec.model_copy(update={"version": version})
    return scheme


CHANGED = changed_scheme()


def changed_dimensions() -> set[str]:
    return {
        name
        for name, dim in CHANGED.dimensions.items()
        if dim.fingerprint != DEFAULT.dimensions[name].fingerprint
    }


def test_only_the_edited_dimension_has_a_new_fingerprint() -> None:
    assert len(changed_dimensions()) == 1
    again = parse_scheme(default_scheme_text())
    assert {n: d.fingerprint for n, d in again.dimensions.items()} == {
        n: d.fingerprint for n, d in DEFAULT.dimensions.items()
    }


def classified(delivered: list[Fact]) -> tuple[CustomerState, int]:
    state = CustomerState("p", CustomerFacts("p"))
    at = 0
    for fact in delivered:
        at = max(at, fact.seen)
        state.facts.apply_fact(fact)
        review_until(state, DEFAULT, at, cutoffs=CUTOFFS)
        reclassify(state, DEFAULT, at, ChangeReason.EVENT, cutoffs=CUTOFFS)
    return state, at


def activate(state: CustomerState, as_of: int) -> None:
    """What an activation job does to one customer (BatchProcessor.reevaluate)."""
    review_until(state, CHANGED, as_of, cutoffs=CUTOFFS)
    reclassify(state, CHANGED, as_of, ChangeReason.SCHEME_CHANGE, cutoffs=CUTOFFS, only=())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts(), st.integers(0, 400))
def test_activation_ends_in_the_classes_of_a_full_evaluation(
    delivered: list[Fact], later_days: int
) -> None:
    state, at = classified(delivered)
    if not state.classes:
        return
    as_of = at + later_days * DAY
    # The reference evaluates every dimension: without fingerprints nothing is carried.
    full = copy.deepcopy(state)
    for stored in full.classes.values():
        del stored["def"]
    review_until(full, CHANGED, as_of, cutoffs=CUTOFFS)
    reclassify(full, CHANGED, as_of, ChangeReason.SCHEME_CHANGE, cutoffs=CUTOFFS)
    activate(state, as_of)
    for dim, stored in state.classes.items():
        assert (stored["class"], stored["since"]) == (
            full.classes[dim]["class"],
            full.classes[dim]["since"],
        ), dim
    assert all(c["scheme_version"] == 2 for c in state.classes.values())
    assert state.next_review_at == full.next_review_at


def test_activation_evaluates_only_the_changed_dimension_and_the_ranks() -> None:
    order = Fact("order", "o1", 10 * DAY, 10 * DAY, {"a": 120.0, "s": "placed", "r": 0})
    state, at = classified([order])
    assert state.next_review_at is not None
    assert state.next_review_at > at + DAY
    activate(state, at + DAY)  # nothing is due yet
    assert state.evaluation is not None
    ranks = {n for n, d in CHANGED.dimensions.items() if not d.carries}
    assert set(state.evaluation.classes) == changed_dimensions() | ranks
    # Activated again (a resumed job): everything already holds under version 2.
    activate(state, at + DAY)
    assert set(state.evaluation.classes) == set()


def test_activation_moves_a_customer_the_edited_rule_now_matches() -> None:
    """Three orders in a year: `occasional` under version 1, `regular` under version 2."""
    orders = [
        Fact(
            "order",
            f"o{i}",
            (10 + 30 * i) * DAY,
            (10 + 30 * i) * DAY,
            {"a": 50.0, "s": "placed", "r": 0},
        )
        for i in range(3)
    ]
    state, at = classified(orders)
    assert state.classes["purchase_behavior"]["class"] == "occasional"
    activate(state, at + DAY)
    assert state.classes["purchase_behavior"]["class"] == "regular"
    assert state.classes["purchase_behavior"]["since"] == at + DAY
