"""`next` on the real stack: for generated customers, making the suggested change through
ingest and letting the worker process it moves the customer into that class; a
customer whose next move is time-driven changes class at the instant `next` names."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.kafka_helpers import eventually

pytestmark = pytest.mark.integration
# Dimensions whose classes do not depend on the rest of the population (ABC does: its
# cut-offs move with every customer's revenue, checked in the engine's tests).
DIMENSIONS = ("value", "purchase_behavior", "loyalty", "lifecycle_stage", "relationship")
THROUGH_INGEST = frozenset({"orders", "revenue", "calls", "intent"})
LEVELS = {1: "low", 2: "medium", 3: "high"}


def _order(customer: str, order_id: str, amount: float, at: datetime) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "amount": f"{amount:.2f}",
        "currency": "USD",
        "placed_at": at.isoformat(),
        "status": "paid",
    }


def _call(
    customer: str, call_id: str, outcome: str, at: datetime, intent: str | None = None
) -> dict[str, Any]:
    body = {"call_id": call_id, "customer_id": customer, "started_at": at.isoformat()}
    return {**body, "outcome": outcome, **({"intent": intent} if intent else {})}


def profiles(seed: int, count: int) -> list[tuple[list[tuple[float, float]], list[str]]]:
    """Order histories (days ago, amount) and call outcomes, from a fixed seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        orders = [
            (rng.uniform(1, 500), float(rng.choice([40, 300, 900, 4000, 12_000])))
            for _ in range(rng.randint(0, 4))
        ]
        calls = [
            rng.choice(["connected", "not_interested", "no_answer", "callback_requested"])
            for _ in range(rng.randint(0, 2))
        ]
        out.append((orders, calls))
    return out


async def post(ingest: httpx.AsyncClient, path: str, body: Any) -> None:
    answer = await ingest.post(path, json=body)
    assert answer.status_code == 202, answer.text


async def customer(api: httpx.AsyncClient, cid: str) -> dict[str, Any] | None:
    answer = await api.get(f"/v1/customers/{cid}")
    return answer.json() if answer.status_code == 200 else None


async def make(ingest: httpx.AsyncClient, cid: str, change: dict[str, Any], at: datetime) -> None:
    kind, amount = change["kind"], change["amount"]
    if kind == "orders":
        orders = [_order(cid, f"next-{cid}-{i}", 1.0, at) for i in range(int(amount))]
        await post(ingest, "/v1/orders:batch", orders)
    elif kind == "revenue":
        await post(ingest, "/v1/orders", _order(cid, f"next-{cid}", float(amount), at))
    elif kind == "calls":
        calls = [_call(cid, f"next-{cid}-{i}", change["value"], at) for i in range(int(amount))]
        await post(ingest, "/v1/calls:batch", calls)
    else:  # intent
        await post(ingest, "/v1/calls", _call(cid, f"next-{cid}", "interested", at, LEVELS[amount]))


async def test_making_the_suggested_change_moves_generated_customers_into_that_class(
    worker: None, ingest: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    sent: dict[str, tuple[int, int]] = {}
    for i, (orders, calls) in enumerate(profiles(seed=21, count=6)):
        for dim in DIMENSIONS:
            cid = f"g{i}-{dim}"  # one copy of the history per dimension tried
            sent[cid] = (len(orders), len(calls))
            batch = [
                _order(cid, f"{cid}-o{k}", amount, now - timedelta(days=days))
                for k, (days, amount) in enumerate(orders)
            ]
            if batch:
                await post(ingest, "/v1/orders:batch", batch)
            for k, outcome in enumerate(calls):
                await post(
                    ingest,
                    "/v1/calls",
                    _call(cid, f"{cid}-c{k}", outcome, now - timedelta(days=k + 1)),
                )
            if not batch and not calls:
                await post(ingest, "/v1/calls", _call(cid, f"{cid}-c", "no_answer", now))
                sent[cid] = (0, 1)

    async def complete() -> dict[str, dict[str, Any]] | None:
        found = {}
        for cid, (orders, calls) in sent.items():
            doc = await customer(api, cid)
            if doc is None or doc["aggregates"]["order_count"] != orders:
                return None
            if doc["aggregates"]["call_count"] != calls:
                return None
            found[cid] = doc
        return found

    before = await eventually(complete, within=60)
    tried: dict[str, tuple[str, dict[str, Any]]] = {}
    for cid, doc in before.items():
        dim = cid.split("-", 1)[1]
        nxt = doc["classes"][dim]["next"]
        if nxt is None or nxt["change"]["kind"] not in THROUGH_INGEST:
            continue
        # `next` is as of the evaluation: the change is made at that instant.
        await make(ingest, cid, nxt["change"], datetime.fromisoformat(doc["evaluated_at"]))
        tried[cid] = (dim, nxt)
    assert len(tried) >= 8, f"too few customers with a next move: {sorted(tried)}"

    async def moved() -> dict[str, str] | None:
        landed = {}
        for cid, (dim, _nxt) in tried.items():
            doc = await customer(api, cid)
            assert doc is not None
            landed[cid] = doc["classes"][dim]["class"]
        return landed if all(landed[c] == n["class"] for c, (_, n) in tried.items()) else None

    try:
        await eventually(moved, within=60)
    except AssertionError:
        wrong = {
            cid: (nxt, (await customer(api, cid))["classes"][dim])  # type: ignore[index]
            for cid, (dim, nxt) in tried.items()
        }
        raise AssertionError(f"customers not moved as `next` said: {wrong}") from None


async def test_a_time_driven_next_move_happens_at_the_instant_it_names(
    worker: None, ingest: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    # A first small order almost a year ago and a big one yesterday: the customer becomes
    # strategic when their tenure reaches a year, seconds from now, with no new event.
    now = datetime.now(UTC)
    first = now - timedelta(days=365) + timedelta(seconds=6)
    await post(ingest, "/v1/orders", _order("tenure", "t-1", 100.0, first))
    await post(ingest, "/v1/orders", _order("tenure", "t-2", 60_000.0, now - timedelta(days=1)))

    async def with_both() -> dict[str, Any] | None:
        doc = await customer(api, "tenure")
        return doc if doc is not None and doc["aggregates"]["order_count"] == 2 else None

    doc = await eventually(with_both)
    relationship = doc["classes"]["relationship"]
    assert relationship["class"] == "priority"
    nxt = relationship["next"]
    assert (nxt["class"], nxt["change"]["kind"]) == ("strategic", "time"), nxt
    at = datetime.fromisoformat(nxt["change"]["at"])
    assert at == first + timedelta(days=365)

    async def strategic() -> bool:
        found = await customer(api, "tenure")
        return found is not None and found["classes"]["relationship"]["class"] == "strategic"

    await eventually(strategic, within=30)
    history = await api.get("/v1/customers/tenure/history", params={"dimension": "relationship"})
    periods = history.json()["periods"]
    assert periods[-1]["class"] == "strategic"
    assert datetime.fromisoformat(periods[-1]["valid_from"]) == at
