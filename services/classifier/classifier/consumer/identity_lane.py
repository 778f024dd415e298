"""Merges ahead of the backlog: a second consumer of the activity topic that applies
only merge events.

A merge changes which customer a lookup answers with; behind a backlog of
orders it would wait as long as they do. This lane reads the same topic in a
consumer group of its own (`<CLASSIFIER_CONSUMER_GROUP>-identity`), looks at
each record's type header only (`event_type`, our ingest's, or `ce_type`, a
binary-mode CloudEvent's; records without one are left to the main consumer),
and applies the merges it finds through the same `BatchProcessor`. It is a
shortcut, never the only path: the main consumer still reads every record and
its inbox claim finds a merge the lane applied already done (and the lane's
claim finds one the main consumer applied). Applying a merge before orders
that precede it in the partition ends in the same customers and classes:
those orders resolve to the survivor through its identity links, as they
would after the merge (identity/graph.py).

A record the lane cannot decode or apply is left alone: the main consumer
dead-letters it if it is poison, or applies it in its turn.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from classifier.config import ClassifierSettings
from classifier.consumer.decoding import PoisonMessage, decode
from classifier.db import is_unavailable
from classifier.metrics import LANE_MERGES
from classifier.processing.batch import BatchProcessor, Delivery
from eventschemas.envelope import EVENT_TYPE_HEADER
from eventschemas.events import CrmCompanyMerged, CrmContactMerged

log = logging.getLogger(__name__)

MERGE_TYPES = frozenset({CrmContactMerged.TYPE.encode(), CrmCompanyMerged.TYPE.encode()})
_TYPE_HEADERS = frozenset({EVENT_TYPE_HEADER, "ce_type"})


def is_merge(headers: Any) -> bool:
    """Whether a record's type header names a merge event (its value is not read)."""
    return any(name.lower() in _TYPE_HEADERS and raw in MERGE_TYPES for name, raw in headers)


def merges_of(batches: dict[Any, list[Any]]) -> list[Delivery]:
    """The decodable merge events of a poll, in partition order."""
    items: list[Delivery] = []
    for records in batches.values():
        for record in records:
            if not is_merge(record.headers):
                continue
            try:
                envelope, event = decode(record.value, record.headers)
            except PoisonMessage:
                continue  # the main consumer dead-letters it
            # No partition: the customer's reviews stay with the main consumer's owner.
            items.append(Delivery(envelope, event, None))
    return items


class IdentityLane:
    """Applies merge events as soon as they are published, whatever the backlog."""

    def __init__(
        self, settings: ClassifierSettings, processor: BatchProcessor, stopping: asyncio.Event
    ) -> None:
        self._settings = settings
        self._processor = processor
        self._stopping = stopping
        self.group = f"{settings.consumer_group}-identity"
        self._consumer = AIOKafkaConsumer(
            settings.activity_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            # A new group reads the topic once from its start (headers only, cheap);
            # a merge published while the lane was joining is not skipped.
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            fetch_max_wait_ms=1000,  # answered at once when a record arrives
        )

    async def run(self) -> None:
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=self._settings.poll_timeout_ms,
                    max_records=self._settings.batch_max_records,
                )
                if not batches:
                    continue
                items = merges_of(batches)
                if items and not await self._apply(items):
                    return  # stopping
                try:
                    await self._consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
                except KafkaError as exc:  # a rebalance: the next owner reads them again
                    log.info("identity lane: offset commit failed (%s)", type(exc).__name__)
        finally:
            await self._consumer.stop()

    async def _apply(self, items: list[Delivery]) -> bool:
        """Apply the merges; False when asked to stop while retrying."""
        delay = 0.1
        while True:
            try:
                result = await self._processor.process(items)
                LANE_MERGES.inc(result.applied)
                return True
            except Exception as exc:
                if not is_unavailable(exc):
                    # The main consumer applies (or dead-letters) them in its turn.
                    log.warning(
                        "identity lane: %d merges left to the main consumer (%s)",
                        len(items),
                        type(exc).__name__,
                    )
                    return True
            try:
                await asyncio.wait_for(self._stopping.wait(), random.uniform(delay / 2, delay))
                return False
            except TimeoutError:
                delay = min(delay * 2, self._settings.db_retry_max_seconds)
