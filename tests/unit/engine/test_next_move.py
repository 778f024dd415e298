"""`next`: the nearest better class and the smallest change reaching it, per rule kind;
`changes_at`: when a class changes by itself. Checked by making the change."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.engine import Override, PriorClass, evaluate, parse_scheme, to_micros
from classifier.engine.evaluate import Evaluation
from eventschemas.events import CallLogged, CrmDealStageChanged, OrderPlaced
from tests.unit.engine.builders import NOW, Customer

CUTOFFS = {"abc_tier": {"A": 5000.0, "B": 1000.0}}


def outlook(c: Customer, dimension: str, **kwargs: Any) -> dict[str, Any]:
    explanation = c.evaluate(**kwargs).classes[dimension].explanation
    return {"next": explanation["next"], "changes_at": explanation["changes_at"]}


def test_a_revenue_threshold_says_how_much_more_revenue_within_the_window() -> None:
    nxt = outlook(Customer().order(200, 10), "value")["next"]

    assert nxt["class"] == "medium"
    assert nxt["change"] == {
        "kind": "revenue", "feature": "net_revenue_365d", "amount": 800.0,
        "within_days": 365, "at": None,
    }  # fmt: skip
    assert nxt["text"] == {
        "en": "800.00 more revenue within 365 days",
        "zh": "365天内再增加800.00收入",
    }


def test_a_window_count_says_how_many_more_orders() -> None:
    nxt = outlook(Customer().order(50, 40).order(60, 20), "purchase_behavior")["next"]

    assert nxt["class"] == "regular"
    assert nxt["change"]["kind"] == "orders"
    assert (nxt["change"]["amount"], nxt["change"]["within_days"]) == (2, 365)
    assert nxt["text"]["zh"] == "365天内再下2单"


def test_a_population_cut_off_says_how_much_revenue_reaches_the_next_tier() -> None:
    nxt = outlook(Customer().order(400, 10), "abc_tier", cutoffs=CUTOFFS)["next"]

    assert nxt["class"] == "B"
    assert nxt["change"]["amount"] == 600.0


def test_a_points_score_says_how_many_points() -> None:
    scheme = parse_scheme(
        """
version: 1
features:
  engagement: {half_life_days: 30, points: {call.interested: 15, order: 30}}
dimensions:
  intent:
    classes: [deep, shallow]
    score: {feature: engagement, bands: [{class: deep, min: 40}, {class: shallow}]}
"""
    )
    c = Customer().call("interested", 0)

    explanation = evaluate(scheme, c.facts, to_micros(NOW)).classes["intent"].explanation

    nxt = explanation["next"]
    assert nxt["class"] == "deep"
    assert (nxt["change"]["kind"], nxt["change"]["amount"]) == ("points", 25.0)
    assert nxt["text"]["en"] == "25 more points of engagement"


def test_time_driven_next_and_the_class_changes_at_that_instant() -> None:
    # Bought a little 200 days ago and big 10 days ago: strategic once a year of tenure.
    c = Customer().order(100, 200).order(60_000, 10)

    nxt = outlook(c, "relationship")["next"]

    assert nxt["class"] == "strategic"
    assert nxt["change"]["kind"] == "time"
    at = datetime.fromisoformat(nxt["change"]["at"])
    assert at == NOW + timedelta(days=165)
    assert c.classes(at - timedelta(microseconds=1))["relationship"] == "priority"
    assert c.classes(at)["relationship"] == "strategic"


def test_changes_at_names_when_a_buyer_becomes_churned_unless_they_buy() -> None:
    c = Customer().order(50, 40)

    later = outlook(c, "purchase_behavior")["changes_at"]

    at = datetime.fromisoformat(later["at"])
    assert (later["class"], at) == ("churned", NOW + timedelta(days=325))
    assert later["text"]["en"] == f"becomes churned on {at.date()} unless something happens"
    assert c.classes(at - timedelta(microseconds=1))["purchase_behavior"] == "occasional"
    assert c.classes(at)["purchase_behavior"] == "churned"


def test_no_next_for_the_best_class_an_override_or_unordered_classes() -> None:
    c = Customer().call("deal_closed", 1).crm(industry="retail")
    evaluation = c.evaluate(overrides={"value": Override("high")})

    assert evaluation.classes["lifecycle_stage"].explanation["next"] is None  # won: best
    assert evaluation.classes["value"].explanation["next"] is None  # a manual override
    assert evaluation.classes["industry"].explanation["next"] is None  # ordered: false


# ---- the property: making the suggested change lands in the class -----------------


@st.composite
def histories(draw: st.DrawFn) -> Customer:
    c = Customer(draw(st.sampled_from(["p", "q"])))
    for _ in range(draw(st.integers(0, 6))):
        c.order(draw(st.integers(1, 20_000)), draw(st.floats(0.5, 800)))
    for _ in range(draw(st.integers(0, 3))):
        outcome = draw(st.sampled_from(["no_answer", "connected", "not_interested", "interested"]))
        intent = draw(st.sampled_from([None, "none", "low", "medium"]))
        c.call(outcome, draw(st.floats(0.5, 400)), intent=intent)
    if draw(st.booleans()):
        c.deal(draw(st.sampled_from(["appointmentscheduled", "qualifiedtobuy"])), 5)
    return c


def make(c: Customer, change: dict[str, Any], at: datetime) -> None:
    """Make a suggested change with real event models, at `at`."""
    kind, amount = change["kind"], change["amount"]
    if kind in ("orders", "revenue"):
        for i in range(int(amount) if kind == "orders" else 1):
            value = Decimal(str(amount)) if kind == "revenue" else Decimal(1)
            c.facts.apply(
                OrderPlaced(
                    customer_id=c.id, order_id=f"next-{i}", amount=value, currency="USD",
                    amount_base=value, base_currency="USD", placed_at=at,
                )
            )  # fmt: skip
    elif kind in ("calls", "intent"):
        levels = {1: "low", 2: "medium", 3: "high"}
        for i in range(int(amount) if kind == "calls" else 1):
            c.facts.apply(
                CallLogged(
                    customer_id=c.id, call_id=f"next-{i}", started_at=at,
                    outcome=change.get("value") if kind == "calls" else "interested",
                    intent=levels[int(amount)] if kind == "intent" else None,
                )
            )  # fmt: skip
    elif kind == "deal_stage":
        c.facts.apply(
            CrmDealStageChanged(customer_id=c.id, deal_id="d-next", stage=change["value"],
                                changed_at=at)
        )  # fmt: skip
    elif kind == "attribute":
        c.crm(0, **{change["feature"].removeprefix("attr."): change["value"]})
    elif kind == "contact":
        c.wecom("added", 0, salesperson="next")


def reach(evaluation: Evaluation) -> list[tuple[str, dict[str, Any]]]:
    return [
        (dim, r.explanation["next"])
        for dim, r in evaluation.classes.items()
        if r.explanation["next"] is not None
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_making_the_suggested_change_moves_the_customer_into_that_class(
    c: Customer, data: st.DataObject
) -> None:
    evaluation = c.evaluate(cutoffs=CUTOFFS)
    moves = reach(evaluation)
    if not moves:
        return
    dimension, nxt = data.draw(st.sampled_from(moves))
    change = nxt["change"]
    previous = {d: r.cls for d, r in evaluation.classes.items()}
    prior = {d: PriorClass(cls, to_micros(NOW)) for d, cls in previous.items()}
    if change["kind"] == "time":
        at = datetime.fromisoformat(change["at"])
        after = c.evaluate(at, previous=prior, cutoffs=CUTOFFS)
    else:
        make(c, change, NOW)
        after = c.evaluate(previous=prior, cutoffs=CUTOFFS)
    assert after.classes[dimension].cls == nxt["class"], (dimension, nxt)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_working_out_next_changes_nothing_of_the_customer(c: Customer) -> None:
    c.crm(1, relationship="ordinary")
    before = c.facts.to_doc()

    for result in c.evaluate(cutoffs=CUTOFFS).classes.values():
        assert "next" in result.explanation

    assert c.facts.to_doc() == before
