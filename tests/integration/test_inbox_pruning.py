"""The inbox stays bounded: ids older than the retention are deleted, newer ones kept,
and an event redelivered after its id was pruned changes no class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.consumer.inbox import InboxPruner
from classifier.engine import to_micros
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import OrderPlaced


async def test_old_inbox_rows_are_pruned_and_a_late_redelivery_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], classifier_settings: ClassifierSettings
) -> None:
    await ensure_active_scheme(sessions)
    processor = BatchProcessor(sessions, SchemeCache())
    now = datetime.now(UTC)
    order = OrderPlaced(
        customer_id="inbox-1",
        order_id="inbox-o1",
        amount=Decimal("100"),
        currency="USD",
        amount_base=Decimal("100"),
        base_currency="USD",
        placed_at=now - timedelta(days=3),
    )
    delivery = Delivery(order.to_envelope("t"), order)
    first = await processor.process([delivery])
    assert first.applied == 1
    assert first.changes
    async with sessions() as session, session.begin():
        # Ten days old (beyond the 8-day retention), and one from an hour ago.
        await session.execute(
            text("UPDATE inbox SET processed_at = now() - interval '10 days' WHERE event_id = :e"),
            {"e": delivery.envelope.id},
        )
        await session.execute(
            text("INSERT INTO inbox (event_id, customer_id) VALUES ('recent', 'x')")
        )

    settings = classifier_settings.model_copy(update={"inbox_retention_hours": 192.0})
    pruned = await InboxPruner(settings, sessions, lambda: to_micros(datetime.now(UTC))).prune()

    async with sessions() as session:
        left = set(await session.scalars(text("SELECT event_id FROM inbox")))
    assert pruned >= 1
    assert delivery.envelope.id not in left
    assert "recent" in left
    # Kafka could not redeliver it any more; a producer re-sending it is applied
    # again, and folds into the same facts: no class changes.
    again = await processor.process([delivery])
    assert again.applied == 1
    assert again.changes == []
