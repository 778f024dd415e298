"""The consume loop: poll, dead-letter poison, apply in one transaction, then commit offsets."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from classifier.config import ClassifierSettings
from classifier.consumer.decoding import PoisonMessage, decode
from classifier.consumer.progress import PartitionProgress
from classifier.metrics import (
    BATCH_SIZE,
    CLASS_CHANGES,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    DB_RETRIES,
    DLQ_EVENTS,
    DUPLICATES,
    EVENTS_CONSUMED,
    PROCESSING_SECONDS,
)
from classifier.processing.batch import BatchProcessor, Delivery

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """A database outage (retry the batch) as opposed to a bug (let the worker fail)."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | ConnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class ActivityConsumer:
    """Consumes the activity topic in a consumer group with manual offset commits."""

    def __init__(
        self,
        settings: ClassifierSettings,
        processor: BatchProcessor,
        producer: AIOKafkaProducer,
        *,
        stopping: asyncio.Event,
        progress: PartitionProgress | None = None,
    ) -> None:
        self._settings = settings
        self._processor = processor
        self._producer = producer
        self._stopping = stopping
        self.progress = progress or PartitionProgress()
        self._consumer = AIOKafkaConsumer(
            settings.activity_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def run(self) -> None:
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=self._settings.poll_timeout_ms,
                    max_records=self._settings.batch_max_records,
                )
                if batches:
                    await self._handle(batches)
                await self._update_progress()
        finally:
            await self._consumer.stop()

    async def _update_progress(self) -> None:
        owned = self._consumer.assignment()
        caught: set[int] = set()
        for tp in owned:
            try:
                end = self._consumer.highwater(tp)
                if end is not None and await self._consumer.position(tp) >= end:
                    caught.add(tp.partition)
            except (AssertionError, IllegalStateError):
                # Revoked by a rebalance since assignment() was read: not ours now.
                continue
        self.progress.owned = frozenset(tp.partition for tp in owned)
        self.progress.caught_up = frozenset(caught) & self.progress.owned

    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        items: list[Delivery] = []
        offsets: dict[TopicPartition, int] = {}
        newest: dict[TopicPartition, int] = {}  # timestamp (ms) of each partition's last record
        for tp, records in batches.items():
            for record in records:
                try:
                    envelope, event = decode(record.value, record.headers)
                except PoisonMessage as poison:
                    await self._dead_letter(record, poison)
                    continue
                items.append(Delivery(envelope, event, tp.partition))
            offsets[tp] = records[-1].offset + 1
            newest[tp] = records[-1].timestamp
        started = time.perf_counter()
        result = await self._apply_with_retry(items)
        if result is None:  # stopping while the database was down: commit nothing
            return
        PROCESSING_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(len(items))
        DUPLICATES.inc(result.duplicates)
        self.progress.events_since_cutoffs += result.applied
        for item in items:
            EVENTS_CONSUMED.labels(type=item.envelope.type).inc()
        for change in result.changes:
            CLASS_CHANGES.labels(dimension=change.dimension, reason=change.reason.value).inc()
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved during a rebalance; their new owner sees the
            # events again and the inbox drops them.
            log.warning("offset commit failed after a committed batch: %s", exc)
        self._record_lag(offsets, newest)

    async def _apply_with_retry(self, items: list[Delivery]) -> Any:
        delay = 0.2
        while True:
            try:
                return await self._processor.process(items)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                DB_RETRIES.inc()
                log.warning(
                    "database unavailable (%s); retrying the batch in %.1fs",
                    type(exc).__name__,
                    delay,
                )
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    return None
                except TimeoutError:
                    delay = min(delay * 2, self._settings.db_retry_max_seconds)

    async def _dead_letter(self, record: Any, poison: PoisonMessage) -> None:
        # The original headers stay: a binary-mode event's attributes are there.
        headers = [
            *record.headers,
            ("dlq_reason", poison.reason.encode()),
            ("dlq_error", poison.detail[:1000].encode()),
            ("original_topic", record.topic.encode()),
            ("original_partition", str(record.partition).encode()),
            ("original_offset", str(record.offset).encode()),
        ]
        await self._producer.send_and_wait(
            self._settings.dlq_topic, value=record.value, key=record.key, headers=headers
        )
        DLQ_EVENTS.labels(reason=poison.reason).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            poison.reason,
        )

    def _record_lag(
        self, offsets: dict[TopicPartition, int], newest: dict[TopicPartition, int]
    ) -> None:
        for tp, next_offset in offsets.items():
            try:
                end = self._consumer.highwater(tp)
            except (AssertionError, IllegalStateError):
                continue  # revoked by a rebalance meanwhile
            if end is None:
                continue
            behind = max(end - next_offset, 0)
            age = max(time.time() - newest[tp] / 1000, 0.0) if behind else 0.0
            CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)
            CONSUMER_LAG_SECONDS.labels(topic=tp.topic, partition=str(tp.partition)).set(age)
