"""Deterministic, skewed customer activity for benchmarks (seeded).

A few heavy buyers and many occasional ones (Zipf-like order counts),
seasonality in order dates, refunds and cancellations, telesales call
sequences through the funnel, CRM contact and company profiles with
industries and sizes, deal-stage updates, and (in `stream`) duplicates and
late, out-of-order arrivals.

    python -m bench.generate --customers 1000 --out data/ --format ndjson|csv
    python -m bench.generate --customers 1000 --to-ingest http://127.0.0.1:8001
    python -m bench.generate --customers 1000 --to-kafka   # KAFKA_* settings

Files are for the ingest import endpoints: orders and calls (NDJSON for the
`:batch` endpoints, CSV for `/v1/imports/*`); refunds, cancellations and CRM
updates have no import endpoint and go only to Kafka or the ingest API.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import heapq
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench import loadgen
from classifier.config import ClassifierSettings
from eventschemas.events import (
    ActivityEvent,
    CallLogged,
    CallOutcome,
    CrmCompanyUpdated,
    CrmContactUpdated,
    CrmDealStageChanged,
    IntentLevel,
    OrderCancelled,
    OrderPlaced,
    OrderRefunded,
)

INDUSTRIES = ["C", "retail", "services", "software", "farming", "制造业"]
EVENTS_PER_CUSTOMER = 5.6  # what `stream` yields on average (measured on 20,000 customers)
DEAL_STAGES = ["qualification", "proposal", "negotiation", "closed_won"]
FUNNEL = [
    CallOutcome.NO_ANSWER,
    CallOutcome.CONNECTED,
    CallOutcome.INTERESTED,
    CallOutcome.CALLBACK_REQUESTED,
    CallOutcome.DEAL_CLOSED,
]


def _order_count(rng: random.Random) -> int:
    # Zipf-like: most customers buy 0-3 times, a few buy dozens of times.
    return min(int(rng.paretovariate(1.3)) - 1, 60)


def _seasonal_day(rng: random.Random, span_days: int) -> float:
    # More orders before the year-end peak: accept with a seasonal weight.
    while True:
        day = rng.uniform(0, span_days)
        if rng.random() < 0.6 + 0.4 * math.cos(2 * math.pi * day / 365):
            return day


def customer_events(
    rng: random.Random, customer_id: str, now: datetime, *, span_days: int = 730
) -> list[ActivityEvent]:
    """All events of one customer over the last `span_days`, oldest first."""
    events: list[ActivityEvent] = []
    for i in range(_order_count(rng)):
        placed = now - timedelta(days=_seasonal_day(rng, span_days))
        amount = Decimal(str(round(rng.lognormvariate(5, 1.1), 2)))
        oid = f"{customer_id}-o{i}"
        events.append(
            OrderPlaced(
                customer_id=customer_id,
                order_id=oid,
                amount=amount,
                currency="USD",
                amount_base=amount,
                base_currency="USD",
                placed_at=placed,
            )
        )
        roll = rng.random()
        if roll < 0.05:
            events.append(
                OrderCancelled(
                    customer_id=customer_id, order_id=oid, cancelled_at=placed + timedelta(hours=2)
                )
            )
        elif roll < 0.12:
            part = (amount * Decimal(str(rng.choice([0.3, 0.5, 1.0])))).quantize(Decimal("0.01"))
            events.append(
                OrderRefunded(
                    customer_id=customer_id,
                    refund_id=f"{oid}-r",
                    order_id=oid,
                    amount=part,
                    currency="USD",
                    amount_base=part,
                    base_currency="USD",
                    refunded_at=placed + timedelta(days=rng.uniform(1, 20)),
                )
            )
    start = now - timedelta(days=rng.uniform(0, span_days))
    for j in range(rng.choice([0, 0, 1, 2, 3, 5])):
        step = min(j + rng.choice([0, 0, 1]), len(FUNNEL) - 1)
        events.append(
            CallLogged(
                customer_id=customer_id,
                call_id=f"{customer_id}-c{j}",
                started_at=min(start + timedelta(days=3 * j), now),
                outcome=FUNNEL[step],
                intent=rng.choice([None, IntentLevel.LOW, IntentLevel.MEDIUM, IntentLevel.HIGH]),
                duration_seconds=rng.randint(0, 900),
            )
        )
    if rng.random() < 0.25:  # a B2B account: company profile and a deal moving through stages
        size = int(rng.lognormvariate(3.5, 1.5))
        events.append(
            CrmCompanyUpdated(
                customer_id=customer_id,
                crm_record_id=f"co-{customer_id}",
                updated_at=now - timedelta(days=rng.uniform(30, span_days)),
                attributes={"industry": rng.choice(INDUSTRIES), "employee_count": size},
            )
        )
        opened = now - timedelta(days=rng.uniform(0, 180))
        for k, stage in enumerate(DEAL_STAGES[: rng.randint(1, len(DEAL_STAGES))]):
            events.append(
                CrmDealStageChanged(
                    customer_id=customer_id,
                    deal_id=f"{customer_id}-d1",
                    stage=stage,
                    changed_at=min(opened + timedelta(days=7 * k), now),
                    revision=k,
                )
            )
    if rng.random() < 0.6:
        events.append(
            CrmContactUpdated(
                customer_id=customer_id,
                crm_record_id=f"crm-{customer_id}",
                updated_at=now - timedelta(days=rng.uniform(0, 60)),
                attributes={
                    "industry": rng.choice(INDUSTRIES),
                    "employee_count": int(rng.lognormvariate(3, 1.6)),
                },
                tags=rng.sample(["vip", "b2b", "newsletter"], k=rng.randint(0, 2)),
            )
        )
    events.sort(key=lambda e: e.occurred_at())
    return events


def stream(
    seed: int,
    customers: int,
    now: datetime | None = None,
    *,
    duplicates: float = 0.01,
    late: float = 0.02,
) -> list[ActivityEvent]:
    """All customers' events as they would arrive: interleaved in time order, with a share
    of exact duplicates (the same event sent again) and of late events (arriving after
    up to a few thousand later ones)."""
    events = [e for _, evs in population(seed, customers, now) for e in evs]
    events.sort(key=lambda e: e.occurred_at())
    rng = random.Random(seed + 1)
    arrived: list[ActivityEvent] = []
    held: list[tuple[int, int, ActivityEvent]] = []  # (arrives after, tiebreak, event)
    for i, event in enumerate(events):
        if rng.random() < late:
            heapq.heappush(held, (i + rng.randint(10, 5000), i, event))
        else:
            arrived.append(event)
        if rng.random() < duplicates:
            arrived.append(event)
        while held and held[0][0] <= i:
            arrived.append(heapq.heappop(held)[2])
    arrived += [e for _, _, e in sorted(held)]
    return arrived


def order_input(event: OrderPlaced) -> dict[str, Any]:
    """The ingest API's order body for a generated order."""
    return {
        "order_id": event.order_id,
        "customer_id": event.customer_id,
        "amount": str(event.amount),
        "currency": event.currency,
        "placed_at": event.placed_at.isoformat(),
    }


def call_input(event: CallLogged) -> dict[str, Any]:
    """The ingest API's call body for a generated call."""
    body: dict[str, Any] = {
        "call_id": event.call_id,
        "customer_id": event.customer_id,
        "started_at": event.started_at.isoformat(),
        "duration_seconds": event.duration_seconds,
        "outcome": event.outcome.value,
    }
    if event.intent is not None:
        body["intent"] = event.intent.value
    return body


def ingest_request(event: ActivityEvent) -> tuple[str, dict[str, Any]] | None:
    """(path, body) of the ingest endpoint taking this event; None for CRM updates."""
    if isinstance(event, OrderPlaced):
        return "/v1/orders", order_input(event)
    if isinstance(event, CallLogged):
        return "/v1/calls", call_input(event)
    if isinstance(event, OrderRefunded):
        return f"/v1/orders/{event.order_id}/refunds", {
            "refund_id": event.refund_id,
            "customer_id": event.customer_id,
            "amount": str(event.amount),
            "currency": event.currency,
            "refunded_at": event.refunded_at.isoformat(),
        }
    if isinstance(event, OrderCancelled):
        return f"/v1/orders/{event.order_id}/cancellation", {
            "customer_id": event.customer_id,
            "cancelled_at": event.cancelled_at.isoformat(),
        }
    return None  # CRM updates arrive by webhook, signed by the CRM


def write_files(events: list[ActivityEvent], out: Path, fmt: str) -> dict[str, int]:
    """orders.<fmt> and calls.<fmt> for the ingest's batch (NDJSON) or import (CSV) endpoints."""
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {
        "orders": [order_input(e) for e in events if isinstance(e, OrderPlaced)],
        "calls": [call_input(e) for e in events if isinstance(e, CallLogged)],
    }
    for name, items in rows.items():
        path = out / f"{name}.{fmt}"
        if fmt == "ndjson":
            path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
        else:
            columns = sorted({k for item in items for k in item})
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(items)
    return {name: len(items) for name, items in rows.items()}


async def post_to_ingest(events: list[ActivityEvent], url: str, concurrency: int = 16) -> int:
    """POST each event to its ingest endpoint (CRM updates skipped); returns how many."""
    requests = [r for r in map(ingest_request, events) if r is not None]
    await loadgen.run(
        url,
        lambda i: loadgen.Request("POST", requests[i][0], orjson.dumps(requests[i][1])),
        len(requests),
        concurrency,
    )
    return len(requests)


async def produce(events: list[ActivityEvent], settings: ClassifierSettings) -> int:
    """Write the events straight to the activity topic, keyed by customer."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        pending = []
        for event in events:
            envelope = event.to_envelope("bench")
            pending.append(
                await producer.send(
                    settings.activity_topic,
                    envelope.to_bytes(),
                    key=event.customer_id.encode(),
                    headers=envelope.kafka_headers(),
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duplicates", type=float, default=0.01, help="share sent twice")
    parser.add_argument("--late", type=float, default=0.02, help="share arriving late")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write files to this directory")
    target.add_argument("--to-ingest", metavar="URL", help="POST to the ingest API")
    target.add_argument("--to-kafka", action="store_true", help="produce to the activity topic")
    parser.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    args = parser.parse_args()
    events = stream(args.seed, args.customers, duplicates=args.duplicates, late=args.late)
    if args.out:
        done: object = write_files(events, args.out, args.format)
    elif args.to_ingest:
        done = asyncio.run(post_to_ingest(events, args.to_ingest))
    else:
        done = asyncio.run(produce(events, ClassifierSettings()))
    print(f"{len(events)} events generated for {args.customers} customers: {done}")  # noqa: T201


def population(
    seed: int, customers: int, now: datetime | None = None
) -> Iterator[tuple[str, list[ActivityEvent]]]:
    """Yield (customer id, events) for `customers` customers, deterministically."""
    rng = random.Random(seed)
    now = now or datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(customers):
        cid = f"cust-{n:07d}"
        yield cid, customer_events(rng, cid, now)


if __name__ == "__main__":
    main()
