"""ABC tiers: cut-offs recomputed from the population; only customers whose tier flips change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.models import ClassChange, CustomerClass
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.scheduler import ReviewScheduler
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import OrderPlaced

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)
REVENUES = {
    "c50k": 50_000,
    "c30k": 30_000,
    "c8k": 8_000,
    "c5k": 5_000,
    "c3k": 3_000,
    "c2k": 2_000,
    "c1k": 1_000,
    "c500": 500,
    "c300": 300,
    "c200": 200,
}


def order(customer: str, amount: int) -> Delivery:
    event = OrderPlaced(
        customer_id=customer,
        order_id=f"{customer}-o",
        amount=Decimal(amount),
        currency="USD",
        amount_base=Decimal(amount),
        base_currency="USD",
        placed_at=NOW - timedelta(days=10),
    )
    return Delivery(event.to_envelope("test"), event)


async def tiers(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(
            select(CustomerClass.customer_id, CustomerClass.cls).where(
                CustomerClass.dimension == "abc_tier"
            )
        )
        return {row.customer_id: row.cls for row in rows.all()}


async def tier_changes(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[str]]:
    async with sessions() as session:
        rows = await session.execute(
            select(ClassChange.customer_id, ClassChange.new_class, ClassChange.reason)
            .where(ClassChange.dimension == "abc_tier")
            .order_by(ClassChange.seq)
        )
        out: dict[str, list[str]] = {}
        for cid, cls, reason in rows.all():
            out.setdefault(cid, []).append(f"{cls}:{reason}")
        return out


async def test_cutoffs_move_only_the_customers_whose_tier_flips(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    schemes = SchemeCache()
    processor = BatchProcessor(sessions, schemes)
    scheduler = ReviewScheduler(
        classifier_settings, sessions, processor, schemes, system_clock(frozen_at=NOW)
    )
    await processor.process([order(c, r) for c, r in REVENUES.items()])
    assert set((await tiers(sessions)).values()) == {"C"}  # no cut-offs yet

    flagged = await scheduler.recompute_cutoffs()
    await scheduler.review_once()

    # 50k + 30k = 80% of 100k: A; B up to 95%.
    assert flagged == 5
    assert await tiers(sessions) == {
        "c50k": "A",
        "c30k": "A",
        "c8k": "B",
        "c5k": "B",
        "c3k": "B",
        "c2k": "C",
        "c1k": "C",
        "c500": "C",
        "c300": "C",
        "c200": "C",
    }

    # A new heavy buyer is ranked against the current cut-offs at once (A), and
    # shifts them: 200k + 50k now make A, so 30k drops to B, 5k and 3k to C.
    before = await tier_changes(sessions)
    await processor.process([order("c200k", 200_000)])
    flagged = await scheduler.recompute_cutoffs()
    await scheduler.review_once()
    after = await tier_changes(sessions)

    moved = {c: after[c][len(before.get(c, [])) :] for c in after if after[c] != before.get(c)}
    assert flagged == 3
    assert moved == {
        "c200k": ["A:event"],
        "c30k": ["B:time"],
        "c5k": ["C:time"],
        "c3k": ["C:time"],
    }
