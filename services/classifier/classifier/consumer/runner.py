"""The consume loop: poll, dead-letter poison, apply in one transaction, then commit offsets."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy.exc import ProgrammingError

from classifier.config import ClassifierSettings
from classifier.consumer.decoding import PoisonMessage, decode
from classifier.consumer.progress import PartitionProgress
from classifier.db import is_unavailable, sqlstate
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
from classifier.processing.batch import BatchProcessor, BatchResult, Delivery

log = logging.getLogger(__name__)


def failure_summary(exc: BaseException) -> str:
    """What failed, for the DLQ header: exception types and SQLSTATE only. The message
    is left out: SQLAlchemy's carries the statement's parameters (identities, notes)."""
    names = [type(exc).__name__]
    orig = getattr(exc, "orig", None)
    if orig is not None:
        names.append(type(orig).__name__)
    code = sqlstate(exc)
    return " / ".join(names) + (f" (SQLSTATE {code})" if code else "")


def is_fatal(exc: BaseException) -> bool:
    """Errors no event causes (a missing table or column, out of memory): stop the
    worker and let the supervisor restart it, rather than dead-letter good events."""
    if isinstance(exc, MemoryError | asyncio.CancelledError):
        return True
    code = sqlstate(exc) or ""
    return isinstance(exc, ProgrammingError) and code.startswith("42")


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
        records_of: list[Any] = []
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
                records_of.append(record)
            offsets[tp] = records[-1].offset + 1
            newest[tp] = records[-1].timestamp
        started = time.perf_counter()
        result = await self._apply_isolating(items, records_of)
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

    async def _apply_isolating(
        self, items: list[Delivery], records: list[Any]
    ) -> BatchResult | None:
        """Apply the batch; if it fails on its data, split it until the one event that
        fails is found, dead-letter that event, and apply the rest.

        Halves are applied in order, each in its own transaction (the inbox makes a
        repeat harmless), so events of one customer keep their order.
        """
        try:
            return await self._apply_with_retry(items)
        except Exception as exc:
            if is_fatal(exc):
                raise
            if len(items) <= 1:
                if items:
                    await self._dead_letter(
                        records[0],
                        PoisonMessage("processing_failed", failure_summary(exc)),
                    )
                return BatchResult(0, 0, [])
            log.warning(
                "a batch of %s events failed (%s); splitting it to isolate the event",
                len(items),
                type(exc).__name__,
            )
        middle = len(items) // 2
        first = await self._apply_isolating(items[:middle], records[:middle])
        if first is None:
            return None
        second = await self._apply_isolating(items[middle:], records[middle:])
        if second is None:
            return None
        return BatchResult(
            first.applied + second.applied,
            first.duplicates + second.duplicates,
            first.changes + second.changes,
        )

    async def _apply_with_retry(self, items: list[Delivery]) -> BatchResult | None:
        """Apply; retry transient failures with jittered backoff capped at a few seconds."""
        delay = 0.1
        while True:
            try:
                return await self._processor.process(items)
            except Exception as exc:
                if not is_unavailable(exc):  # outage, timeout, deadlock: retry
                    raise
                DB_RETRIES.inc()
                wait = random.uniform(delay / 2, delay)
                log.warning(
                    "database unavailable or contended (%s %s); retrying the batch in %.2fs",
                    type(exc).__name__,
                    sqlstate(exc) or "",
                    wait,
                )
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=wait)
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
        )  # a broker outage here stops the worker; the supervisor restarts it
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
