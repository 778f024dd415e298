"""Deterministic, skewed customer activity for benchmarks (seeded).

A few heavy buyers and many occasional ones (Zipf-like order counts),
seasonality in order dates, refunds and cancellations, telesales call
sequences, and CRM profiles with industries and company sizes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from eventschemas.events import (
    ActivityEvent,
    CallLogged,
    CallOutcome,
    CrmContactUpdated,
    IntentLevel,
    OrderCancelled,
    OrderPlaced,
    OrderRefunded,
)

INDUSTRIES = ["C", "retail", "services", "software", "farming", "制造业"]
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


def population(
    seed: int, customers: int, now: datetime | None = None
) -> Iterator[tuple[str, list[ActivityEvent]]]:
    """Yield (customer id, events) for `customers` customers, deterministically."""
    rng = random.Random(seed)
    now = now or datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(customers):
        cid = f"cust-{n:07d}"
        yield cid, customer_events(rng, cid, now)
