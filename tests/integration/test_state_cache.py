"""The worker's in-memory states: used only while the stored row is unchanged, and
never after a batch that rolled back (real PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.db import unit_of_work
from classifier.processing import repository
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.processing.cache import StateCache
from classifier.processing.state import CustomerState
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.changes import ChangeReason
from eventschemas.events import OrderPlaced

NOW = datetime.now(UTC) - timedelta(hours=1)


def order(cid: str, n: int, amount: int = 100) -> Delivery:
    event = OrderPlaced(
        customer_id=cid,
        order_id=f"{cid}-o{n}",
        amount=Decimal(amount),
        currency="USD",
        amount_base=Decimal(amount),
        base_currency="USD",
        placed_at=NOW + timedelta(seconds=n),
    )
    return Delivery(event.to_envelope("cache-test"), event)


async def stored_order_count(sessions: async_sessionmaker[AsyncSession], cid: str) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                text("SELECT order_count FROM customers WHERE id = :c"), {"c": cid}
            )
        )


async def test_a_row_changed_by_another_writer_is_read_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    cache = StateCache(100)
    worker = BatchProcessor(sessions, SchemeCache(), cache)
    cid = f"cache-{uuid.uuid4().hex[:8]}"
    await worker.process([order(cid, 1)])
    await worker.process([order(cid, 2)])
    assert cache.hits == 1  # the second batch used the state in memory

    # Another process sets an override on the customer (a write of the row).
    def override(states: dict[str, CustomerState]) -> None:
        states[cid].overrides["value"] = {
            "class": "high",
            "reason": "test",
            "expires_at": None,
        }

    await BatchProcessor(sessions, SchemeCache()).reevaluate(
        [cid], int(NOW.timestamp() * 1e6) + 10_000_000, ChangeReason.OVERRIDE, prepare=override
    )
    await worker.process([order(cid, 3)])
    assert cache.misses == 1  # its row was changed behind its back
    async with unit_of_work(sessions) as session:
        state = (await repository.load_states(session, [cid]))[cid]
    assert state.overrides["value"]["class"] == "high"  # the override was not lost
    assert state.classes["value"]["class"] == "high"
    assert await stored_order_count(sessions, cid) == 3


async def test_a_batch_that_rolls_back_leaves_nothing_in_memory(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    cache = StateCache(100)
    worker = BatchProcessor(sessions, SchemeCache(), cache)
    cid = f"cache-{uuid.uuid4().hex[:8]}"
    await worker.process([order(cid, 1)])
    async with unit_of_work(sessions) as session:  # the next facts-log row of this customer fails
        await session.execute(
            text(
                "CREATE OR REPLACE FUNCTION cache_test_fail() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END $$ LANGUAGE plpgsql"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER cache_test_fail BEFORE INSERT ON customer_facts FOR EACH ROW "
                f"WHEN (NEW.customer_id = '{cid}') EXECUTE FUNCTION cache_test_fail()"
            )
        )
    try:
        with pytest.raises(Exception, match="refused"):
            await worker.process([order(cid, 2, amount=5000)])
    finally:
        async with unit_of_work(sessions) as session:
            await session.execute(text("DROP TRIGGER cache_test_fail ON customer_facts"))
    assert len(cache) == 0
    # The next batch reads the row as committed: one order, then this one.
    await worker.process([order(cid, 3)])
    assert await stored_order_count(sessions, cid) == 2
    async with unit_of_work(sessions) as session:
        state = (await repository.load_states(session, [cid]))[cid]
    assert sorted(state.facts.orders) == [f"{cid}-o1", f"{cid}-o3"]
