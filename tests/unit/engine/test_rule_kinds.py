"""Each feature kind, rule kind and option of the scheme language, on a small custom scheme."""

from __future__ import annotations

from classifier.engine import (
    Override,
    PriorClass,
    compute_cutoffs,
    evaluate,
    parse_scheme,
    to_micros,
)
from classifier.engine.features import _age_flip, aggregates
from tests.unit.engine.builders import NOW_US, Customer, ago

DAY = 86_400_000_000

SCHEME = parse_scheme("""
version: 7
features:
  spend_30d: {source: orders, agg: sum, field: net_amount, window: {last_days: 30}}
  avg_30d: {source: orders, agg: avg, field: amount, window: {last_days: 30}}
  max_30d: {source: orders, agg: max, field: amount, window: {last_days: 30}}
  min_30d: {source: orders, agg: min, field: amount, window: {last_days: 30}}
  orders_last_year_only: {source: orders, agg: count, window: {from_days: 365, to_days: 30}}
  outcomes_90d: {source: calls, agg: distinct, field: outcome, window: {last_days: 90}}
  connected_7d:
    source: calls
    agg: count
    where: {outcome: [connected, interested]}
    window: {last_days: 7}
  first_call_days: {source: calls, agg: first_days_ago, window: {last_days: 400}}
  refunds_30d: {source: refunds, agg: sum, window: {last_days: 30}}
  engagement: {points: {order: 40, call.interested: 20, call.rejected: -10}, half_life_days: 10}
dimensions:
  engagement_level:
    classes: [hot, warm, cold]
    default: cold
    score:
      feature: engagement
      margin: 5
      bands: [{class: hot, min: 50}, {class: warm, min: 20}]
  spend_rank:
    classes: [top, rest]
    rank: {feature: spend_30d, method: percentile, shares: {top: 0.25}}
  funnel:
    classes: [won, engaged, lead]
    default: lead
    forward_only: true
    rules:
      - {class: won, when: {feature: order_count, gte: 1}}
      - {class: lead, name: reset_by_opt_out, allow_backward: true,
         when: {feature: tags, contains: opted_out}}
      - {class: engaged, when: {feature: connected_7d, gte: 1}}
  region:
    classes: [north, south, unknown]
    default: unknown
    map: {feature: attr.region, values: {beijing: north, guangzhou: south}}
""")


def classes(c: Customer, at: int = NOW_US, **kw: object) -> dict[str, str]:
    return {d: r.cls for d, r in evaluate(SCHEME, c.facts, at, **kw).classes.items()}  # type: ignore[arg-type]


def features(c: Customer, *names: str) -> dict[str, object]:
    from classifier.engine.conditions import EvalContext

    ctx = EvalContext(c.facts, NOW_US, SCHEME.features)
    return {n: ctx.value(n) for n in names}


def test_window_aggregates() -> None:
    c = Customer().order(100, 5, order_id="a").order(300, 20).order(50, 45).order(70, 400)
    c.refund("a", 40, 3)

    assert features(c, "spend_30d", "avg_30d", "max_30d", "min_30d", "refunds_30d") == {
        "spend_30d": 360.0,
        "avg_30d": 200.0,
        "max_30d": 300.0,
        "min_30d": 100.0,
        "refunds_30d": 40.0,
    }
    # Between offsets: 30..365 days ago only.
    assert features(c, "orders_last_year_only") == {"orders_last_year_only": 1}


def test_window_filters_distinct_and_first_seen() -> None:
    c = Customer().call("connected", 2).call("no_answer", 3).call("interested", 10)
    c.call("connected", 100).call("rejected", 350)

    assert features(c, "connected_7d", "outcomes_90d", "first_call_days") == {
        "connected_7d": 1,
        "outcomes_90d": 3,
        "first_call_days": 350,
    }


def test_built_in_order_features() -> None:
    c = Customer().order(100, 40, order_id="a").order(200, 30).order(300, 10)
    c.refund("a", 60, 20)

    assert features(
        c,
        "order_count",
        "net_revenue",
        "refund_ratio",
        "avg_order_value",
        "avg_purchase_interval_days",
        "purchase_interval_cv",
        "recency_days",
        "tenure_days",
    ) == {
        "order_count": 3,
        "net_revenue": 540.0,
        "refund_ratio": 0.1,
        "avg_order_value": 180.0,
        "avg_purchase_interval_days": 15.0,
        "purchase_interval_cv": 0.3333,
        "recency_days": 10,
        "tenure_days": 40,
    }


def test_built_in_call_features() -> None:
    c = Customer().call("no_answer", 9).call("interested", 6, intent="medium").call("busy", 2)

    assert features(
        c,
        "call_count",
        "connected_calls",
        "interested_calls",
        "last_call_outcome",
        "max_intent",
        "days_since_contact",
    ) == {
        "call_count": 3,
        "connected_calls": 1,
        "interested_calls": 1,
        "last_call_outcome": "busy",
        "max_intent": 2,
        "days_since_contact": 2,
    }


def test_points_decay_by_half_life() -> None:
    c = Customer().order(10, 10).call("interested", 20).call("rejected", 0)

    # 40 * 2^-1 + 20 * 2^-2 - 10 = 15
    assert features(c, "engagement") == {"engagement": 15.0}


def test_score_bands_and_the_instant_a_score_decays_below_a_band() -> None:
    c = Customer().order(10, 0)  # 40 points now: warm, hot never
    result = evaluate(SCHEME, c.facts, NOW_US)

    assert result.classes["engagement_level"].cls == "warm"
    # 40 * 2^(-t/10d) = 20 at t = 10 days: the band changes then, not before.
    review = result.next_review_at
    assert review is not None
    assert abs(review - (NOW_US + 10 * DAY)) <= 2_000
    assert evaluate(SCHEME, c.facts, review - 1).classes["engagement_level"].cls == "warm"
    assert evaluate(SCHEME, c.facts, review).classes["engagement_level"].cls == "cold"


def test_score_margin_keeps_a_better_band_until_clearly_below() -> None:
    c = Customer().order(10, 0).call("interested", 0).call("rejected", 0)  # 40+20-10 = 50 -> hot
    assert classes(c)["engagement_level"] == "hot"

    later = NOW_US + DAY  # 50 * 2^-0.1 = 46.65: below 50 but within the margin of 5
    prior = {"engagement_level": PriorClass("hot", NOW_US)}
    kept = evaluate(SCHEME, c.facts, later, previous=prior).classes["engagement_level"]
    fresh = evaluate(SCHEME, c.facts, later).classes["engagement_level"]

    assert (kept.cls, kept.rule) == ("hot", "margin")
    assert fresh.cls == "warm"


def test_percentile_rank_uses_cutoffs_computed_from_the_population() -> None:
    spenders = [Customer(f"c{i}").order(amount, 5) for i, amount in enumerate([10, 20, 30, 400])]
    cutoffs = {
        "spend_rank": compute_cutoffs(
            SCHEME.dimensions["spend_rank"], [aggregates(s.facts)["net_revenue"] for s in spenders]
        )
    }

    ranks = [classes(s, cutoffs=cutoffs)["spend_rank"] for s in spenders]

    assert cutoffs == {"spend_rank": {"top": 400.0}}
    assert ranks == ["rest", "rest", "rest", "top"]


def test_forward_only_never_moves_back_except_by_an_explicit_rule() -> None:
    engaged_once = Customer().call("connected", 20)  # the 7-day window has passed
    prior = {"funnel": PriorClass("engaged", to_micros(ago(20)))}

    stays = evaluate(SCHEME, engaged_once.facts, NOW_US, previous=prior).classes["funnel"]
    opted_out = Customer().call("connected", 20).crm(tags=["opted_out"])
    reset = evaluate(SCHEME, opted_out.facts, NOW_US, previous=prior).classes["funnel"]

    assert (stays.cls, stays.explanation["kept_by"]) == ("engaged", "forward_only")
    assert (reset.cls, reset.rule) == ("lead", "reset_by_opt_out")


def test_attribute_mapping_through_attr_features() -> None:
    assert classes(Customer().crm(region="Beijing"))["region"] == "north"
    assert classes(Customer().crm(region="Lhasa"))["region"] == "unknown"


def test_override_wins_until_it_expires() -> None:
    c = Customer()
    expires = NOW_US + 3 * DAY
    override = {"funnel": Override("won", expires, reason="signed offline")}

    during = evaluate(SCHEME, c.facts, NOW_US, overrides=override)
    after = evaluate(SCHEME, c.facts, expires, overrides=override)

    assert during.classes["funnel"].cls == "won"
    assert during.classes["funnel"].explanation["reason"] == "signed offline"
    assert during.next_review_at == expires
    assert after.classes["funnel"].cls == "lead"


def test_age_flips_tell_a_true_operand_from_one() -> None:
    """The candidate ages are cached per operands: `exists: true` on an age feature (no
    age to wait for) must not answer for `gte: 1` (one day), though (True,) == (1,)."""
    anchor = NOW_US - 3_600_000_000  # an hour ago: age 0 days
    assert _age_flip(anchor, 0, lambda v: v is not None, [True]) is None
    assert _age_flip(anchor, 0, lambda v: v >= 1, [1]) == anchor + 86_400_000_000
