"""Merges ahead of the backlog (consumer/identity_lane.py), on real Kafka and PostgreSQL:
a merge published behind events the main consumer is stuck on is applied at once, and
once the main consumer gets through, every event has applied exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.consumer.identity_lane import is_merge
from classifier.models import ProcessedEvent
from classifier.processing.batch import BatchProcessor
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from classifier.worker import run_worker
from eventschemas.events import ActivityEvent, CrmContactMerged
from tests.integration.test_identity import T0, deliver, order
from tests.kafka_helpers import eventually

pytestmark = pytest.mark.integration


def test_only_merge_records_are_picked_by_their_type_header() -> None:
    assert is_merge([("event_type", b"crm.contact.merged")])
    assert is_merge([("content-type", b"application/json"), ("ce_type", b"crm.company.merged")])
    assert not is_merge([("event_type", b"order.placed")])
    assert not is_merge([])  # no type header: left to the main consumer


async def _publish(settings: ClassifierSettings, events: list[ActivityEvent]) -> None:
    """As ingest publishes them (type headers), all on one partition, in this order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            envelope = event.to_envelope("lane-test")
            await producer.send_and_wait(
                settings.activity_topic,
                value=envelope.to_bytes(),
                key=b"one-partition",
                headers=envelope.kafka_headers(),
            )
    finally:
        await producer.stop()


async def _merged_into(sessions: async_sessionmaker[AsyncSession], cid: str) -> str | None:
    async with sessions() as session:
        value = await session.scalar(
            text("SELECT merged_into FROM customers WHERE id = :id"), {"id": cid}
        )
        return None if value is None else str(value)


async def _applied(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0)


async def test_a_merge_is_applied_while_the_main_consumer_is_stuck_behind_the_backlog(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tag = uuid.uuid4().hex[:8]
    survivor, absorbed, stuck = f"a-{tag}", f"z-{tag}", f"b-{tag}"
    await ensure_active_scheme(sessions)
    # The three customers exist, with an order each.
    await BatchProcessor(sessions, SchemeCache()).process(
        deliver(order(survivor, 1), order(absorbed, 2), order(stuck, 3))
    )
    backlog: list[ActivityEvent] = [order(stuck, 10 + n) for n in range(12)]
    merge = CrmContactMerged(
        customer_id=survivor, absorbed_ids=[absorbed], merged_at=T0 + timedelta(hours=3)
    )
    await _publish(classifier_settings, [*backlog, merge])
    # Small batches: the main consumer's first one holds only `stuck`'s orders, and
    # it waits on this lock for as long as the test holds it.
    settings = classifier_settings.model_copy(update={"batch_max_records": 4})
    stopping = asyncio.Event()
    async with sessions() as blocker:
        await blocker.execute(
            text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": stuck}
        )
        worker = asyncio.create_task(run_worker(settings, stopping))
        try:
            assert await eventually(lambda: _merged_into(sessions, absorbed)) == survivor
            assert await _applied(sessions) == 3 + 1  # the direct batch and the merge only
        finally:
            await blocker.rollback()
    try:
        # The main consumer gets through; the merge it meets is already applied.
        await eventually(lambda: _at(sessions, 3 + len(backlog) + 1))
        async with sessions() as session:
            orders = await session.scalar(
                text("SELECT order_count FROM customers WHERE id = :id"), {"id": survivor}
            )
            stuck_orders = await session.scalar(
                text("SELECT order_count FROM customers WHERE id = :id"), {"id": stuck}
            )
        assert orders == 2  # the survivor holds both customers' orders
        assert stuck_orders == 1 + len(backlog)
        await asyncio.sleep(0.5)  # nothing more arrives: each event applied once
        assert await _applied(sessions) == 3 + len(backlog) + 1
    finally:
        stopping.set()
        await asyncio.wait_for(worker, timeout=30)


async def _at(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    return await _applied(sessions) == count
