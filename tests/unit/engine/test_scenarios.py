"""The default scheme against DOMAIN.md's definitions of each class."""

from __future__ import annotations

from classifier.engine import CustomerFacts, PriorClass, compute_cutoffs, evaluate, to_micros
from tests.unit.engine.builders import DEFAULT, NOW_US, Customer, ago


def test_frequent_recent_buyer_is_regular() -> None:
    c = Customer()
    for days in (5, 30, 60, 85, 200):
        c.order(120, days)

    assert c.classes()["purchase_behavior"] == "regular"


def test_one_recent_purchase_is_occasional() -> None:
    assert Customer().order(50, 40).classes()["purchase_behavior"] == "occasional"


def test_customer_whose_purchases_are_all_older_than_a_year_is_churned() -> None:
    c = Customer().order(500, 400).order(300, 700)

    result = c.classes()

    assert result["purchase_behavior"] == "churned"
    assert result["loyalty"] == "low"


def test_interested_calls_without_purchases_make_a_potential_in_the_funnel() -> None:
    c = Customer().call("no_answer", 10).call("interested", 3, intent="medium")

    result = c.classes()

    assert result["purchase_behavior"] == "potential"
    assert result["lifecycle_stage"] == "initial_intent"
    assert result["value"] == "low"
    assert result["loyalty"] == "none"


def test_clear_intent_is_deep_intent_and_a_deal_is_won() -> None:
    c = Customer().call("interested", 5, intent="high")
    assert c.classes()["lifecycle_stage"] == "deep_intent"

    c.call("deal_closed", 1)
    assert c.classes()["lifecycle_stage"] == "won"


def test_crm_deal_stages_move_the_funnel() -> None:
    assert Customer().deal("qualifiedtobuy", 3).classes()["lifecycle_stage"] == "initial_intent"
    assert Customer().deal("contractsent", 3).classes()["lifecycle_stage"] == "deep_intent"
    assert Customer().deal("closedwon", 3).classes()["lifecycle_stage"] == "won"


def test_refunds_beyond_purchases_make_negative_value() -> None:
    c = Customer().order(100, 30, order_id="o-a").refund("o-a", 100, 20)
    c.refund("o-missing", 80, 10)  # a refund whose order we never saw

    evaluation = c.evaluate()

    assert evaluation.classes["value"].cls == "negative"
    assert evaluation.classes["value"].rule == "costs_more_than_it_brings"
    assert evaluation.features["contribution"] == -80.0


def test_service_cost_above_revenue_is_negative_value() -> None:
    c = Customer().order(200, 10).crm(service_cost=500)

    assert c.classes()["value"] == "negative"


def test_large_recent_revenue_is_high_value_and_medium_below() -> None:
    assert Customer().order(12_000, 10).classes()["value"] == "high"
    assert Customer().order(2_000, 10).classes()["value"] == "medium"
    assert Customer().order(200, 10).classes()["value"] == "low"


def test_cancelled_orders_do_not_count() -> None:
    c = Customer().order(12_000, 10, order_id="big").cancel("big", 9)

    result = c.evaluate()

    assert result.classes["value"].cls == "low"
    assert result.features["order_count"] == 0
    assert result.classes["purchase_behavior"].cls == "potential"


def test_long_term_repeat_buyer_is_highly_loyal() -> None:
    c = Customer()
    for days in (20, 120, 250, 500):
        c.order(100, days)

    assert c.classes()["loyalty"] == "high"


def test_repeat_buyer_with_many_refunds_is_not_highly_loyal() -> None:
    c = Customer()
    for i, days in enumerate((20, 120, 250, 500)):
        c.order(100, days, order_id=f"o{i}")
    c.refund("o0", 100, 15)

    assert c.classes()["loyalty"] == "medium"


def test_key_account_flag_makes_strategic_and_vip_tag_priority() -> None:
    assert Customer().crm(key_account=True).classes()["relationship"] == "strategic"
    assert Customer().crm(tags=["vip"]).classes()["relationship"] == "priority"
    assert Customer().crm(tags=["newsletter"]).classes()["relationship"] == "ordinary"


def test_relationship_does_not_drop_before_the_dwell_time() -> None:
    c = Customer().crm(tags=["newsletter"])
    held_since = to_micros(ago(10))

    result = c.evaluate(previous={"relationship": PriorClass("strategic", held_since)})

    relationship = result.classes["relationship"]
    assert relationship.cls == "strategic"
    assert relationship.explanation["kept_by"] == "min_dwell"
    assert relationship.explanation["would_be"] == "ordinary"
    assert result.next_review_at == held_since + 30 * 86_400_000_000


def test_industry_codes_and_names_map_to_classes() -> None:
    assert Customer().crm(industry="C").classes()["industry"] == "manufacturing"
    assert Customer().crm(industry="Retail").classes()["industry"] == "retail"
    assert Customer().crm(industry="信息技术").classes()["industry"] == "technology"
    assert Customer().crm(industry="farming").classes()["industry"] == "other"


def test_employee_count_bands_make_company_size() -> None:
    assert Customer().crm(employee_count=1200).classes()["company_size"] == "large"
    assert Customer().crm(employee_count=40).classes()["company_size"] == "sme"
    assert Customer().crm(employee_count=3).classes()["company_size"] == "micro"
    assert Customer().classes()["company_size"] == "unknown"


def test_need_type_comes_from_crm_or_survey_answers() -> None:
    assert Customer().crm(need_type="质量").classes()["need_type"] == "quality"
    assert Customer().crm(need_type="social").classes()["need_type"] == "social"
    assert Customer().classes()["need_type"] == "unknown"


def test_abc_tier_a_is_the_few_customers_bringing_80_percent_of_revenue() -> None:
    revenues = [50_000, 30_000, 8_000, 5_000, 3_000, 2_000, 1_000, 500, 300, 200]
    cutoffs = compute_cutoffs(DEFAULT.dimensions["abc_tier"], revenues)

    tiers = [
        Customer(f"c{i}").order(r, 30).classes(cutoffs={"abc_tier": cutoffs})["abc_tier"]
        for i, r in enumerate(revenues)
    ]

    # 50k + 30k = 80k of 100k: exactly two customers make A; B reaches 95%.
    assert tiers == ["A", "A", "B", "B", "B", "C", "C", "C", "C", "C"]


def test_abc_tier_without_cutoffs_says_so() -> None:
    result = Customer().order(100, 3).evaluate()

    assert result.classes["abc_tier"].cls == "C"
    assert "not computed" in result.classes["abc_tier"].explanation["summary"]


def test_explanation_names_the_rule_and_the_values_it_compared() -> None:
    c = Customer()
    for days in (5, 30, 60, 85):
        c.order(120, days)

    behaviour = c.evaluate().classes["purchase_behavior"]

    assert behaviour.rule == "frequent_and_recent"
    assert behaviour.explanation["checks"] == [
        {"feature": "orders_365d", "op": "gte", "expected": 4, "actual": 4, "result": True},
        {"feature": "recency_days", "op": "lte", "expected": 90, "actual": 5, "result": True},
    ]
    assert behaviour.explanation["summary"] == "(orders_365d = 4 >= 4 and recency_days = 5 <= 90)"


def test_churn_happens_exactly_when_the_last_order_leaves_the_year() -> None:
    c = Customer().order(80, 100)
    evaluation = c.evaluate()
    churn_at = to_micros(ago(100)) + 365 * 86_400_000_000

    assert evaluation.classes["purchase_behavior"].cls == "occasional"
    assert evaluation.next_review_at is not None
    assert evaluation.next_review_at <= churn_at
    assert evaluation.next_review_at > NOW_US
    before = evaluate(DEFAULT, c.facts, churn_at - 1).classes["purchase_behavior"].cls
    at = evaluate(DEFAULT, c.facts, churn_at).classes["purchase_behavior"].cls
    assert (before, at) == ("occasional", "churned")


def test_a_salesperson_adding_the_customer_on_wecom_deepens_the_relationship() -> None:
    c = Customer()
    assert c.classes()["relationship"] == "ordinary"

    relationship = c.wecom("added", 2).evaluate().classes["relationship"]

    assert relationship.cls == "priority"
    assert relationship.rule == "added_by_salesperson"
    assert relationship.explanation["label"] == "销售已添加企业微信"
    assert relationship.explanation["features"] == {"sales_contacts": 1}


def test_a_customer_who_deletes_every_salesperson_weakens_the_relationship() -> None:
    c = Customer().wecom("added", 90, salesperson="s-1").wecom("added", 80, salesperson="s-2")
    prior = {"relationship": PriorClass("priority", to_micros(ago(80)))}
    c.wecom("removed_by_customer", 5, salesperson="s-1")
    assert c.classes(previous=prior)["relationship"] == "priority"  # s-2 still has them

    relationship = (
        c.wecom("removed_by_customer", 3, salesperson="s-2")
        .evaluate(previous=prior)
        .classes["relationship"]
    )

    assert relationship.cls == "ordinary"
    assert relationship.rule == "customer_removed_salesperson"
    assert relationship.explanation["features"] == {
        "contacts_removed_by_customer": 2,
        "sales_contacts": 0,
    }


def test_a_salesperson_removing_the_customer_only_closes_that_channel() -> None:
    c = Customer().wecom("added", 40).wecom("removed_by_us", 10)

    evaluation = c.evaluate()

    assert evaluation.classes["relationship"].cls == "ordinary"
    assert evaluation.classes["relationship"].rule == "default"
    assert evaluation.features["sales_contacts"] == 0


def test_relationship_changes_apply_by_source_time_not_arrival() -> None:
    late_add = Customer().wecom("removed_by_customer", 1).wecom("added", 20)
    assert late_add.evaluate().features["sales_contacts"] == 0
    assert late_add.classes()["relationship"] == "ordinary"


def test_follow_ups_and_wecom_contacts_are_touch_points() -> None:
    c = Customer().follow_up(10).follow_up(200).wecom("added", 5).wecom("edited", 1)

    evaluation = c.evaluate()

    assert evaluation.features["touchpoints_90d"] == 3
    assert DEFAULT.features["days_since_touchpoint"].value(c.facts, NOW_US) == 1
    assert evaluation.features["lead_score"] > 0


def test_relationship_and_touch_point_facts_survive_the_stored_document() -> None:
    c = Customer().wecom("added", 5).wecom("removed_by_customer", 2, salesperson="s-9")
    c.follow_up(3)

    stored = CustomerFacts.from_doc(c.id, c.facts.to_doc())

    assert stored.links == c.facts.links
    assert stored.touches == c.facts.touches
