"""Classes that mean what DOMAIN.md says, told as customer stories on the real stack:
what happened (through ingest and Kafka), which class the worker gave, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from classifier.config import ClassifierSettings
from eventschemas.events import CrmContactUpdated
from tests.kafka_helpers import eventually, publish_raw

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


async def classes_of(api: httpx.AsyncClient, customer: str) -> dict[str, Any]:
    answer = await api.get(f"/v1/customers/{customer}")
    return answer.json()["classes"] if answer.status_code == 200 else {}


async def accepted(answer: httpx.Response) -> None:
    assert answer.status_code == 202, answer.text


def order(customer: str, order_id: str, amount: str, days_ago: float) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "amount": amount,
        "currency": "USD",
        "placed_at": at(days_ago),
        "status": "paid",
    }


async def test_stories_of_interest_and_of_undone_orders(
    worker: None, ingest: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    # Li's only call ended "not interested": no sign of interest, so not `potential`.
    await accepted(
        await ingest.post(
            "/v1/calls",
            json={"call_id": "call-li", "customer_id": "li", "started_at": at(2),
                  "outcome": "not_interested", "intent": "none"},
        )
    )  # fmt: skip
    # Wang asked to be called back: that is interest.
    await accepted(
        await ingest.post(
            "/v1/calls",
            json={"call_id": "call-wang", "customer_id": "wang", "started_at": at(2),
                  "outcome": "callback_requested"},
        )
    )  # fmt: skip
    # Zhao placed an order and cancelled it the next day.
    await accepted(await ingest.post("/v1/orders", json=order("zhao", "SO-z", "800.00", 5)))
    # Chen bought, and got every cent back three days later (within the 14-day period).
    await accepted(await ingest.post("/v1/orders", json=order("chen", "SO-c", "500.00", 10)))

    async def first_classes() -> bool:
        return all([await classes_of(api, c) for c in ("li", "wang", "zhao", "chen")])

    await eventually(first_classes)
    # Both were `won` while their orders stood (the forward-only funnel then holds).
    assert (await classes_of(api, "zhao"))["lifecycle_stage"]["class"] == "won"
    assert (await classes_of(api, "chen"))["lifecycle_stage"]["class"] == "won"
    await accepted(
        await ingest.post(
            "/v1/orders/SO-z/cancellation", json={"customer_id": "zhao", "cancelled_at": at(4)}
        )
    )
    await accepted(
        await ingest.post(
            "/v1/orders/SO-c/refunds",
            json={"refund_id": "RF-c", "customer_id": "chen", "amount": "500.00",
                  "currency": "USD", "refunded_at": at(7)},
        )
    )  # fmt: skip

    async def undone() -> bool:
        zhao, chen = await classes_of(api, "zhao"), await classes_of(api, "chen")
        return (
            zhao["lifecycle_stage"]["class"] != "won" and chen["lifecycle_stage"]["class"] != "won"
        )

    await eventually(undone)

    li = (await classes_of(api, "li"))["purchase_behavior"]
    assert li["class"] == "unknown"
    assert "no sign of interest" in li["explanation"]["summary"]

    wang = (await classes_of(api, "wang"))["purchase_behavior"]
    assert (wang["class"], wang["rule"]) == ("potential", "shows_interest")
    assert "interested_calls = 1" in wang["explanation"]["summary"]

    zhao = await classes_of(api, "zhao")
    # A cancelled order is no purchase, but placing it showed interest.
    assert zhao["purchase_behavior"]["class"] == "potential"
    assert "orders_placed = 1" in zhao["purchase_behavior"]["explanation"]["summary"]
    assert zhao["lifecycle_stage"]["class"] == "potential"
    assert zhao["lifecycle_stage"]["explanation"]["released"] == "forward_only"

    chen = await classes_of(api, "chen")
    assert chen["lifecycle_stage"]["class"] == "potential"
    assert "refunded in full" in chen["lifecycle_stage"]["explanation"]["summary"]


async def test_a_fresh_stack_ranks_its_first_customers_within_seconds(
    worker: None, ingest: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    # Three shops' first orders on a new installation: the biggest brings most revenue.
    for customer, amount in (("big", "90000.00"), ("mid", "6000.00"), ("small", "400.00")):
        await accepted(
            await ingest.post("/v1/orders", json=order(customer, f"SO-{customer}", amount, 3))
        )
    started = datetime.now(UTC)

    async def ranked() -> dict[str, str] | None:
        tiers = {}
        for customer in ("big", "mid", "small"):
            found = await classes_of(api, customer)
            if not found:
                return None
            tiers[customer] = found["abc_tier"]["class"]
        return tiers if tiers["big"] == "A" else None

    tiers = await eventually(ranked, within=10)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert tiers == {"big": "A", "mid": "B", "small": "C"}, tiers
    assert elapsed < 10
    big = (await classes_of(api, "big"))["abc_tier"]
    assert "not computed" not in big["explanation"]["summary"]


async def test_as_of_now_answers_current_classes_with_events_slightly_in_the_future(
    worker: None, ingest: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    # The shop's clock runs 4 minutes ahead: its order is stamped in the future.
    ahead = datetime.now(UTC) + timedelta(seconds=240)
    await accepted(
        await ingest.post(
            "/v1/orders", json={**order("sun", "SO-s", "300.00", 0), "placed_at": ahead.isoformat()}
        )
    )
    await eventually(lambda: classes_of(api, "sun"))

    now = datetime.now(UTC)
    # `now`, nothing, or a client clock a little ahead of the server's: the current classes.
    for query in ({"as_of": "now"}, {}, {"as_of": (now + timedelta(seconds=2)).isoformat()}):
        answer = await api.get("/v1/customers/sun/classes", params=query)
        assert answer.status_code == 200, answer.text
        held = answer.json()["classes"]
        assert held["purchase_behavior"]["class"] == "occasional", (query, held)
        assert held["lifecycle_stage"]["class"] == "won"
    # In event time, a minute ago the order had not happened yet.
    before = (now - timedelta(minutes=1)).isoformat()
    past = (await api.get("/v1/customers/sun/classes", params={"as_of": before})).json()
    assert "purchase_behavior" not in past["classes"]


async def test_two_crms_disagree_on_the_industry_the_trusted_one_wins_and_it_is_listed(
    worker: None, api: httpx.AsyncClient, classifier_settings: ClassifierSettings
) -> None:
    # HubSpot says Liu's company is retail (yesterday); the Fxiaoke account says
    # manufacturing (a week ago). The default scheme trusts Fxiaoke first.
    def contact(source: str, days_ago: float, industry: str) -> tuple[bytes, bytes]:
        event = CrmContactUpdated(
            customer_id="liu",
            crm_record_id=f"{source}-liu",
            updated_at=NOW - timedelta(days=days_ago),
            attributes={"industry": industry},
        )
        envelope = event.to_envelope(source)
        return envelope.subject.encode(), envelope.to_bytes()

    await publish_raw(
        classifier_settings.kafka_bootstrap_servers,
        classifier_settings.activity_topic,
        [contact("crm/fxiaoke", 7, "manufacturing"), contact("crm/hubspot", 1, "retail")],
    )

    async def both_folded() -> dict[str, Any] | None:
        found = await classes_of(api, "liu")
        conflicts = (await api.get("/v1/attribute-conflicts")).json()
        return found if found and conflicts["total"] == 1 else None

    industry = (await eventually(both_folded))["industry"]
    assert industry["class"] == "manufacturing"
    assert industry["explanation"]["checks"][0]["source"] == "crm/fxiaoke"
    assert "(from crm/fxiaoke)" in industry["explanation"]["summary"]
    listed = (await api.get("/v1/attribute-conflicts", params={"attribute": "industry"})).json()
    assert listed["by_attribute"] == {"industry": 1}
    assert listed["customers"] == [
        {
            "customer_id": "liu",
            "conflicts": {"industry": {"crm/fxiaoke": "manufacturing", "crm/hubspot": "retail"}},
        }
    ]
    assert (await api.get("/v1/attribute-conflicts", params={"attribute": "region"})).json()[
        "customers"
    ] == []
