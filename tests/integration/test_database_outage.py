"""A database outage is not a poison message: the worker waits, retries, and skips nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.metrics import DB_RETRIES
from classifier.models import Customer, ProcessedEvent
from classifier.worker import run_worker
from eventschemas.events import OrderPlaced
from tests.kafka_helpers import eventually, publish_raw, topic_size
from tests.tcp_proxy import proxy_in_front_of

pytestmark = pytest.mark.integration


def orders(prefix: str, count: int) -> list[tuple[bytes, bytes]]:
    placed = datetime.now(UTC) - timedelta(days=1)
    out = []
    for i in range(count):
        customer = f"{prefix}-{i % 10}"
        env = OrderPlaced(
            customer_id=customer,
            order_id=f"{prefix}-o{i}",
            amount=Decimal("10"),
            currency="USD",
            amount_base=Decimal("10"),
            base_currency="USD",
            placed_at=placed + timedelta(seconds=i),
        ).to_envelope("test")
        out.append((customer.encode(), env.to_bytes()))
    return out


async def applied(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0)


async def applied_is(sessions: async_sessionmaker[AsyncSession], expected: int) -> bool:
    return await applied(sessions) == expected


async def test_worker_rides_out_a_database_outage(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    proxy, via_proxy = await proxy_in_front_of(classifier_settings.database_url)
    settings = classifier_settings.model_copy(
        update={"database_url": via_proxy, "db_retry_max_seconds": 1.0}
    )
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.activity_topic
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stopping))
    try:
        await publish_raw(bootstrap, topic, orders("before", 30))
        await eventually(lambda: applied_is(sessions, 30))
        retries_before = DB_RETRIES._value.get()

        async def retrying() -> bool:
            return DB_RETRIES._value.get() > retries_before

        await proxy.cut()
        await publish_raw(bootstrap, topic, orders("during", 40))
        await eventually(retrying, within=30)
        assert await applied(sessions) == 30  # nothing applied, nothing skipped while down
        await asyncio.sleep(1)
        await proxy.restore()

        await eventually(lambda: applied_is(sessions, 70), within=60)
    finally:
        stopping.set()
        await asyncio.wait_for(worker, timeout=30)
        await proxy.cut()
    async with sessions() as session:
        rows = await session.execute(
            select(Customer.id, Customer.order_count).where(Customer.id.like("during-%"))
        )
        counts = {row.id: row.order_count for row in rows.all()}
    assert counts == {f"during-{i}": 4 for i in range(10)}
    assert await topic_size(bootstrap, settings.dlq_topic) == 0  # an outage is not poison
