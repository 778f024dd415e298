"""The worker's operations metrics say what the alerts need: outbox age, review lateness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.changes.relay import OutboxRelay
from classifier.config import ClassifierSettings
from classifier.metrics import WORKER_REGISTRY
from classifier.models import ClassChange

pytestmark = pytest.mark.integration


def change(n: int, created_at: datetime) -> ClassChange:
    return ClassChange(
        change_id=f"ops-{n}",
        customer_id=f"ops-c{n}",
        dimension="value",
        old_class=None,
        new_class="low",
        scheme_version=1,
        reason="event",
        event_id=None,
        rule=None,
        occurred_at=created_at,
        created_at=created_at,
    )


async def test_outbox_age_is_the_oldest_unrelayed_change_and_zero_once_relayed(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=classifier_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        relay = OutboxRelay(classifier_settings, sessions, producer, leading=True)
        assert await relay.measure_backlog() == 0.0  # empty outbox

        now = datetime.now(UTC)
        async with sessions.begin() as session:
            session.add_all([change(1, now - timedelta(minutes=5)), change(2, now)])
        age = await relay.measure_backlog()
        assert 290 < age < 360
        assert WORKER_REGISTRY.get_sample_value("classifier_outbox_oldest_age_seconds") == age

        while await relay.relay_once():
            pass
        assert await relay.measure_backlog() == 0.0
        assert WORKER_REGISTRY.get_sample_value("classifier_outbox_oldest_age_seconds") == 0.0
    finally:
        await producer.stop()
