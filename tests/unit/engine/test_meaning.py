"""Classes that mean what DOMAIN.md says, as customer stories: what happened, what class, why."""

from __future__ import annotations

from classifier.engine import PriorClass, parse_scheme, to_micros
from tests.unit.engine.builders import DEFAULT, Customer, ago

WON_LONG_AGO = {"lifecycle_stage": PriorClass("won", to_micros(ago(20)))}


def test_a_contact_whose_only_call_ended_not_interested_is_not_potential() -> None:
    c = Customer().call("not_interested", 3, intent="none")

    evaluation = c.evaluate()

    result = evaluation.classes["purchase_behavior"]
    assert result.cls == "unknown"
    assert "no sign of interest" in result.explanation["summary"]


def test_a_crm_record_without_any_sign_of_interest_is_not_potential() -> None:
    c = Customer().crm(industry="retail", employee_count=40)

    assert c.classes()["purchase_behavior"] == "unknown"


def test_an_interested_call_makes_a_potential_buyer_and_says_why() -> None:
    c = Customer().call("callback_requested", 2)

    result = c.evaluate().classes["purchase_behavior"]

    assert result.cls == "potential"
    assert result.rule == "shows_interest"
    assert "interested_calls = 1 >= 1" in result.explanation["summary"]


def test_a_crm_lead_status_or_deal_stage_showing_interest_makes_potential() -> None:
    assert Customer().crm(lead_status="in_progress").classes()["purchase_behavior"] == "potential"
    assert Customer().deal("qualifiedtobuy", 2).classes()["purchase_behavior"] == "potential"


def test_an_order_placed_then_cancelled_is_a_sign_of_interest_but_no_purchase() -> None:
    c = Customer().order(800, 10, order_id="o-1").cancel("o-1", 9)

    result = c.classes(previous=WON_LONG_AGO)

    assert result["purchase_behavior"] == "potential"
    assert result["lifecycle_stage"] == "potential"


def test_a_cancelled_order_never_keeps_the_funnel_won() -> None:
    c = Customer().order(800, 10, order_id="o-1").cancel("o-1", 9)

    result = c.evaluate(previous=WON_LONG_AGO).classes["lifecycle_stage"]

    assert result.cls == "potential"
    assert result.explanation["released"] == "forward_only"
    assert "cancelled or refunded in full" in result.explanation["summary"]


def test_an_order_refunded_in_full_within_the_cancellation_period_does_not_win() -> None:
    c = Customer().order(800, 30, order_id="o-1").refund("o-1", 800, 25)

    assert c.classes(previous=WON_LONG_AGO)["lifecycle_stage"] == "potential"


def test_a_full_refund_after_the_cancellation_period_leaves_the_purchase_won() -> None:
    c = Customer().order(800, 60, order_id="o-1").refund("o-1", 800, 20)

    assert c.classes(previous=WON_LONG_AGO)["lifecycle_stage"] == "won"


def test_forward_only_still_holds_real_evidence_when_the_crm_stage_moves_back() -> None:
    c = Customer().deal("closedwon", 10).deal("qualifiedtobuy", 2)

    result = c.evaluate(previous=WON_LONG_AGO).classes["lifecycle_stage"]

    assert result.cls == "won"
    assert result.explanation["kept_by"] == "forward_only"


def test_a_cancelled_order_next_to_a_won_deal_keeps_won() -> None:
    c = Customer().call("deal_closed", 12).order(800, 10, order_id="o-1").cancel("o-1", 9)

    assert c.classes(previous=WON_LONG_AGO)["lifecycle_stage"] == "won"


def test_scheme_documents_may_name_the_class_cls_or_class_and_emit_class() -> None:
    text = """
version: 1
dimensions:
  d:
    classes: [hi, lo]
    default: lo
    rules:
      - {cls: hi, when: {feature: order_count, gte: 1}}
      - {class: lo, when: {feature: order_count, lt: 1}}
"""
    scheme = parse_scheme(text)

    rules = scheme.spec.model_dump(mode="json", by_alias=True)["dimensions"]["d"]["rules"]
    assert [r["class"] for r in rules] == ["hi", "lo"]
    assert DEFAULT.dimensions["industry"].spec.ordered is False
