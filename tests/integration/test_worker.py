"""The worker on real Kafka and PostgreSQL: apply once, announce changes, dead-letter poison."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.models import ClassChange, ClassHistory, Customer, CustomerClass, ProcessedEvent
from classifier.worker import run_worker
from eventschemas.events import ActivityEvent, OrderPlaced, OrderRefunded
from tests.kafka_helpers import eventually, publish_raw, read_topic

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def order(customer: str, order_id: str, amount: str, days_ago: float) -> OrderPlaced:
    return OrderPlaced(
        customer_id=customer,
        order_id=order_id,
        amount=Decimal(amount),
        currency="USD",
        amount_base=Decimal(amount),
        base_currency="USD",
        placed_at=NOW - timedelta(days=days_ago),
    )


def wire(event: ActivityEvent) -> tuple[bytes, bytes]:
    envelope = event.to_envelope("test")
    return envelope.subject.encode(), envelope.to_bytes()


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
async def worker(
    request: pytest.FixtureRequest,
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[asyncio.Event]:
    """One worker, or two in one consumer group (each with its consumer, relay and
    scheduler: the relay's and the cut-offs' advisory locks are contended)."""
    stopping = asyncio.Event()
    tasks = [
        asyncio.create_task(run_worker(classifier_settings, stopping)) for _ in range(request.param)
    ]
    yield stopping
    stopping.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def customer_row(sessions: async_sessionmaker[AsyncSession], cid: str) -> Customer | None:
    async with sessions() as session:
        return await session.get(Customer, cid)


async def count(sessions: async_sessionmaker[AsyncSession], stmt: object) -> int:
    async with sessions() as session:
        return int(await session.scalar(stmt) or 0)  # type: ignore[call-overload]


async def test_order_is_applied_and_the_change_is_published(
    worker: asyncio.Event,
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bootstrap = classifier_settings.kafka_bootstrap_servers
    placed = order("c-1", "o-1", "250.00", days_ago=3)
    await publish_raw(bootstrap, classifier_settings.activity_topic, [wire(placed)])

    row = await eventually(lambda: customer_row(sessions, "c-1"))
    assert row.order_count == 1
    assert row.net_revenue == Decimal("250.0000")
    assert row.classes["purchase_behavior"]["class"] == "occasional"
    assert row.classes["purchase_behavior"]["rule"] == "bought_within_a_year"
    records = await read_topic(bootstrap, classifier_settings.class_changes_topic, expected=9)
    announced = [orjson.loads(r.value)["data"] for r in records]
    changes = {c["dimension"]: c for c in announced}
    change = changes["purchase_behavior"]
    assert records[0].key == b"c-1"
    assert change["old_class"] is None
    assert change["new_class"] == "occasional"
    assert change["reason"] == "event"
    assert change["event_id"] == placed.to_envelope("test").id
    assert change["scheme_version"] == 1


async def test_redelivered_event_changes_nothing(
    worker: asyncio.Event,
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bootstrap = classifier_settings.kafka_bootstrap_servers
    first = order("c-2", "o-1", "80", days_ago=10)
    second = order("c-2", "o-2", "20", days_ago=1)
    # The same event three times (a producer retry, a re-uploaded file), then another.
    await publish_raw(
        bootstrap,
        classifier_settings.activity_topic,
        [wire(first), wire(first), wire(first), wire(second)],
    )

    async def both_applied() -> bool:
        row = await customer_row(sessions, "c-2")
        return row is not None and row.last_event_id == second.to_envelope("test").id

    await eventually(both_applied)
    row = await customer_row(sessions, "c-2")
    assert row is not None
    assert row.order_count == 2
    assert row.net_revenue == Decimal("100.0000")
    assert await count(sessions, select(func.count()).select_from(ProcessedEvent)) == 2
    history = await count(sessions, select(func.count()).select_from(ClassHistory))
    changes = await count(sessions, select(func.count()).select_from(ClassChange))
    assert history == changes


async def test_refund_before_its_order_ends_right(
    worker: asyncio.Event,
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    refund = OrderRefunded(
        customer_id="c-3",
        refund_id="r-1",
        order_id="o-1",
        amount=Decimal("30"),
        currency="USD",
        amount_base=Decimal("30"),
        base_currency="USD",
        refunded_at=NOW - timedelta(days=1),
    )
    placed = order("c-3", "o-1", "100", days_ago=2)
    await publish_raw(
        classifier_settings.kafka_bootstrap_servers,
        classifier_settings.activity_topic,
        [wire(refund), wire(placed)],
    )

    async def settled() -> Customer | None:
        row = await customer_row(sessions, "c-3")
        return row if row is not None and row.order_count == 1 else None

    row = await eventually(settled)
    assert row.gross_revenue == Decimal("100.0000")
    assert row.refunded_amount == Decimal("30.0000")
    assert row.net_revenue == Decimal("70.0000")


async def test_poison_message_goes_to_the_dlq_and_the_partition_moves_on(
    worker: asyncio.Event,
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bootstrap = classifier_settings.kafka_bootstrap_servers
    good = order("c-4", "o-1", "10", days_ago=1)
    bad_type = orjson.dumps(
        {**orjson.loads(wire(good)[1]), "type": "order.teleported", "id": "x-1"}
    )
    await publish_raw(
        bootstrap,
        classifier_settings.activity_topic,
        [(b"c-4", b"not json at all"), (b"c-4", bad_type), wire(good)],
    )

    await eventually(lambda: customer_row(sessions, "c-4"))
    dead = await read_topic(bootstrap, classifier_settings.dlq_topic, expected=2)
    assert [r.value for r in dead] == [b"not json at all", bad_type]
    headers = dict(dead[0].headers)
    assert headers["dlq_reason"] == b"invalid_envelope"
    assert headers["original_topic"] == classifier_settings.activity_topic.encode()
    assert headers["original_offset"] == str(0).encode()
    assert dict(dead[1].headers)["dlq_reason"] == b"unknown_type"
    members = await count(
        sessions,
        select(func.count()).select_from(CustomerClass).where(CustomerClass.customer_id == "c-4"),
    )
    assert members == 9
