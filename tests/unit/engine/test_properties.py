"""Invariants of evaluation over random facts and instants (hypothesis)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.engine import CompiledScheme, CustomerFacts, PriorClass, evaluate, to_micros
from eventschemas.events import (
    CallLogged,
    CallOutcome,
    CrmContactUpdated,
    IntentLevel,
    OrderPlaced,
    OrderRefunded,
)
from tests.unit.engine.builders import DEFAULT, NOW

DAY_US = 86_400_000_000
# Half the facts are recent, so decaying scores and short windows sit near their thresholds.
days_back = st.one_of(
    st.floats(min_value=0, max_value=30, allow_nan=False),
    st.floats(min_value=0, max_value=3 * 365, allow_nan=False),
)
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("20000"), places=2)


@st.composite
def activity(draw: st.DrawFn, customer: str = "p") -> list[object]:
    events: list[object] = []
    for i in range(draw(st.integers(0, 8))):
        amount = draw(amounts)
        events.append(
            OrderPlaced(
                customer_id=customer,
                order_id=f"o{i}",
                amount=amount,
                currency="USD",
                amount_base=amount,
                base_currency="USD",
                placed_at=NOW - timedelta(days=draw(days_back)),
            )
        )
        if draw(st.booleans()) and draw(st.booleans()):
            events.append(
                OrderRefunded(
                    customer_id=customer,
                    refund_id=f"r{i}",
                    order_id=f"o{i}",
                    amount=amount / 2,
                    currency="USD",
                    amount_base=amount / 2,
                    base_currency="USD",
                    refunded_at=NOW - timedelta(days=draw(days_back)),
                )
            )
    for i in range(draw(st.integers(0, 6))):
        events.append(
            CallLogged(
                customer_id=customer,
                call_id=f"c{i}",
                started_at=NOW - timedelta(days=draw(days_back)),
                outcome=draw(st.sampled_from(list(CallOutcome))),
                intent=draw(st.none() | st.sampled_from(list(IntentLevel))),
            )
        )
    if draw(st.booleans()):
        events.append(
            CrmContactUpdated(
                customer_id=customer,
                crm_record_id="crm",
                updated_at=NOW - timedelta(days=1),
                attributes={
                    "employee_count": draw(st.integers(0, 5000)),
                    "industry": draw(st.sampled_from(["C", "retail", "x"])),
                },
                tags=draw(st.lists(st.sampled_from(["vip", "b2b"]), max_size=2)),
            )
        )
    return events


def facts_of(events: list[object]) -> CustomerFacts:
    facts = CustomerFacts("p")
    for event in events:
        facts.apply(event)  # type: ignore[arg-type]
    return facts


def classes(facts: CustomerFacts, at: int, scheme: CompiledScheme = DEFAULT) -> dict[str, str]:
    return {d: r.cls for d, r in evaluate(scheme, facts, at).classes.items()}


NOW_US = to_micros(NOW)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(activity())
def test_every_dimension_gets_exactly_one_of_its_classes(events: list[object]) -> None:
    result = evaluate(DEFAULT, facts_of(events), NOW_US)

    assert set(result.classes) == set(DEFAULT.dimensions)
    for name, res in result.classes.items():
        assert res.cls in DEFAULT.dimensions[name].classes


@FAST
@given(activity())
def test_evaluation_is_deterministic(events: list[object]) -> None:
    a = evaluate(DEFAULT, facts_of(events), NOW_US)
    b = evaluate(DEFAULT, facts_of(list(events)), NOW_US)

    assert {d: (r.cls, r.explanation) for d, r in a.classes.items()} == {
        d: (r.cls, r.explanation) for d, r in b.classes.items()
    }
    assert a.next_review_at == b.next_review_at


@FAST
@given(
    activity(),
    st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
    st.integers(0, 400),
)
def test_nothing_changes_before_next_review_at(
    events: list[object], fraction: float, offset_days: int
) -> None:
    facts = facts_of(events)
    now = NOW_US + offset_days * DAY_US
    result = evaluate(DEFAULT, facts, now)
    current = {d: r.cls for d, r in result.classes.items()}
    if result.next_review_at is None:
        # Nothing is time-dependent: a far later instant gives the same classes.
        assert classes(facts, now + 5 * 365 * DAY_US) == current
        return
    review = result.next_review_at

    assert review > now
    assert classes(facts, review - 1) == current
    between = now + int((review - now) * fraction)
    assert classes(facts, min(between, review - 1)) == current


@FAST
@given(
    activity(),
    st.lists(
        st.sampled_from(["interested", "deal_closed", "not_interested", "rejected", "no_answer"]),
        min_size=1,
        max_size=6,
    ),
)
def test_the_funnel_never_moves_backwards(events: list[object], outcomes: list[str]) -> None:
    funnel = DEFAULT.dimensions["lifecycle_stage"]
    facts = facts_of(events)
    at = NOW_US
    first = evaluate(DEFAULT, facts, at).classes["lifecycle_stage"]
    prior = PriorClass(first.cls, at)
    for i, outcome in enumerate(outcomes):
        at += DAY_US
        facts.apply(
            CallLogged(
                customer_id="p",
                call_id=f"late{i}",
                outcome=outcome,  # type: ignore[arg-type]
                started_at=NOW + timedelta(days=i + 1),
            )
        )
        stage = evaluate(DEFAULT, facts, at, previous={"lifecycle_stage": prior})
        new = stage.classes["lifecycle_stage"].cls
        assert funnel.rank_of(new) <= funnel.rank_of(prior.cls)
        prior = PriorClass(new, at if new != prior.cls else prior.since)
