"""Bounded state: folding facts incrementally, with the past summarised as the
worker does, gives the same features and classes as folding every fact in full
detail (hypothesis, over random histories delivered in random order)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.engine import evaluate
from classifier.engine.conditions import EvalContext
from classifier.engine.facts import (
    CALL,
    CANCEL,
    CONTACT,
    DEAL,
    ORDER,
    REFUND,
    RELATIONSHIP,
    TOUCH,
    CustomerFacts,
    Fact,
    rebuild,
)
from classifier.processing.state import compact
from tests.unit.engine.builders import DEFAULT

DAY = 86_400_000_000
T0 = 1_600_000_000_000_000  # 2020-09-13
SPAN_DAYS = 6 * 365  # longer than the default scheme's 730-day horizon
OUTCOMES = ["connected", "interested", "no_answer", "deal_closed", "not_interested"]

instants = st.integers(0, SPAN_DAYS * DAY).map(lambda us: T0 + us)


@st.composite
def facts(draw: st.DrawFn) -> list[Fact]:
    out: list[Fact] = []
    orders = draw(st.integers(0, 12))
    for i in range(orders):
        at = draw(instants)
        for rev in range(draw(st.integers(1, 2))):  # a revision may follow
            status = draw(st.sampled_from(["placed", "placed", "cancelled"]))
            amount = float(draw(st.integers(1, 5000)))
            out.append(Fact(ORDER, f"o{i}", at, at, {"a": amount, "s": status, "r": rev}))
        if draw(st.booleans()):
            # Refunds may come before their order, and after it by up to a year.
            refunded = at + draw(st.integers(-30, 365)) * DAY
            body = {"o": f"o{i}", "a": float(draw(st.integers(1, 500)))}
            out.append(Fact(REFUND, f"r{i}", refunded, refunded, body))
        if draw(st.integers(0, 5)) == 0:
            out.append(Fact(CANCEL, f"o{i}", at + DAY, at + DAY, {}))
    for i in range(draw(st.integers(0, 8))):
        at = draw(instants)
        body = {"o": draw(st.sampled_from(OUTCOMES)), "i": draw(st.sampled_from([None, 1, 3]))}
        out.append(Fact(CALL, f"c{i}", at, at, body | {"d": 60, "w": "outbound"}))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(instants)
        attrs = {"industry": draw(st.sampled_from(["retail", "software"])), "service_cost": 50}
        out.append(Fact(CONTACT, "", at, at, {"attrs": attrs, "tags": ["vip"]}))
    for stage in draw(st.lists(st.sampled_from(["qualification", "proposal", "won"]))):
        at = draw(instants)
        out.append(Fact(DEAL, "", at, at, {"stage": stage}))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(instants)
        change = draw(st.sampled_from(["added", "edited", "removed_by_customer"]))
        body = {"ch": "wecom", "own": draw(st.sampled_from(["s1", "s2"])), "chg": change}
        out.append(Fact(RELATIONSHIP, "", at, at, body))
    for i in range(draw(st.integers(0, 4))):
        at = draw(instants)
        out.append(Fact(TOUCH, f"crm:t{i}", at, at, {"kind": "follow_up"}))
    order = draw(st.permutations(range(len(out))))
    delivered = [out[i] for i in order]
    # Duplicates: some facts delivered again later.
    for i in draw(st.lists(st.integers(0, max(len(out) - 1, 0)), max_size=3)):
        if out:
            delivered.insert(draw(st.integers(0, len(delivered))), out[i])
    return delivered


def fold_like_the_worker(facts_in: list[Fact], batch_every: int) -> tuple[CustomerFacts, int]:
    """Fold in delivery order, summarising the past after every `batch_every` facts, and
    rebuilding from everything seen so far when a fact reaches into the summary."""
    state = CustomerFacts("p")
    seen: list[Fact] = []
    evaluated_at = 0
    for n, fact in enumerate(facts_in, 1):
        seen.append(fact)
        if state.needs_rebuild(fact):
            state = rebuild("p", seen)
        else:
            state.apply_fact(fact)
        evaluated_at = max(evaluated_at, fact.seen)
        # The worker evaluates after every fact: derived rows and sums are kept and
        # grown in place by the next fact (FactsView.memo).
        ctx = EvalContext(state, evaluated_at, DEFAULT.features)
        for name in DEFAULT.features:
            ctx.value(name)
        if n % batch_every == 0:
            compact(state, DEFAULT, evaluated_at)
    compact(state, DEFAULT, evaluated_at)
    return state, evaluated_at


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts(), st.integers(1, 5), st.integers(0, 800))
def test_summarised_state_matches_a_full_rebuild(
    delivered: list[Fact], batch_every: int, later_days: int
) -> None:
    incremental, evaluated_at = fold_like_the_worker(delivered, batch_every)
    full = rebuild("p", delivered)
    assert full.past is None
    for at in (evaluated_at, evaluated_at + later_days * DAY):
        a = EvalContext(incremental, at, DEFAULT.features)
        b = EvalContext(full, at, DEFAULT.features)
        for name in DEFAULT.features:
            assert same(a.value(name), b.value(name)), (name, at, a.value(name), b.value(name))
        got = evaluate(DEFAULT, incremental, at).classes
        want = evaluate(DEFAULT, full, at).classes
        assert {d: r.cls for d, r in got.items()} == {d: r.cls for d, r in want.items()}


def test_state_size_is_bounded_by_the_horizon() -> None:
    """Ten years of daily orders keep only the horizon's orders in detail."""
    daily = [
        Fact(ORDER, f"o{i}", T0 + i * DAY, T0 + i * DAY, {"a": 10.0, "s": "placed", "r": 0})
        for i in range(3650)
    ]
    state, at = fold_like_the_worker(daily, 50)
    horizon_days = DEFAULT.horizon // DAY
    assert state.past is not None
    assert state.past.purchases + len(state.orders) == 3650
    assert len(state.orders) <= horizon_days + 7 + horizon_days // 8
    assert EvalContext(state, at, DEFAULT.features).value("order_count") == 3650
