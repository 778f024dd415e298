"""The outbox relay: publishes recorded class changes, marks them after the broker acked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.db import unit_of_work
from classifier.metrics import CHANGES_PUBLISHED
from classifier.models import ClassChange
from eventschemas.changes import ChangeReason, ClassChanged

log = logging.getLogger(__name__)
RELAY_LOCK = 7_002  # one relay at a time keeps per-customer order across workers


def to_record(row: ClassChange) -> ClassChanged:
    return ClassChanged(
        change_id=row.change_id,
        customer_id=row.customer_id,
        dimension=row.dimension,
        old_class=row.old_class,
        new_class=row.new_class,
        scheme_version=row.scheme_version,
        reason=ChangeReason(row.reason),
        event_id=row.event_id,
        rule=row.rule,
        occurred_at=row.occurred_at,
    )


class OutboxRelay:
    def __init__(
        self,
        settings: ClassifierSettings,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._producer = producer

    async def relay_once(self) -> int:
        """Publish one page of unpublished changes in order; returns how many."""
        async with unit_of_work(self._sessions) as session:
            got = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RELAY_LOCK}
            )
            if not got:
                return 0
            rows = list(
                await session.scalars(
                    select(ClassChange)
                    .where(ClassChange.published_at.is_(None))
                    .order_by(ClassChange.seq)
                    .limit(self._settings.relay_batch_size)
                )
            )
            if not rows:
                return 0
            futures = [
                await self._producer.send(
                    self._settings.class_changes_topic,
                    value=orjson.dumps(to_record(row).model_dump(mode="json")),
                    key=row.customer_id.encode(),
                    headers=[("change_id", row.change_id.encode())],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            await session.execute(
                update(ClassChange)
                .where(ClassChange.seq.in_([r.seq for r in rows]))
                .values(published_at=datetime.now(UTC))
            )
        CHANGES_PUBLISHED.inc(len(rows))
        return len(rows)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                sent = await self.relay_once()
            except Exception:
                log.exception("outbox relay failed; retrying")
                sent = 0
                await asyncio.sleep(1)
            if sent < self._settings.relay_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._settings.relay_interval_seconds)
