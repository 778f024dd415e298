"""The consume loop: poll, dead-letter poison, apply in one transaction, then commit offsets
(the next batch is polled and decoded meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
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


@dataclass(slots=True)
class PolledBatch:
    """One poll's records, decoded: what to apply, what to dead-letter, what to commit."""

    items: list[Delivery] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)  # the record of each item
    poison: list[tuple[Any, PoisonMessage]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read
    first: dict[TopicPartition, int] = field(default_factory=dict)  # first offset polled
    newest: dict[TopicPartition, int] = field(default_factory=dict)  # last record's ts (ms)
    ends: dict[TopicPartition, int | None] = field(default_factory=dict)  # log end when polled
    generation: int = 0  # the consumer's rebalance count when it was polled


def decode_batch(batches: dict[TopicPartition, list[Any]], generation: int) -> PolledBatch:
    """Decode a poll's records; poison is set aside for the dead-letter topic."""
    polled = PolledBatch(generation=generation)
    for tp, records in batches.items():
        for record in records:
            try:
                envelope, event = decode(record.value, record.headers)
            except PoisonMessage as poison:
                polled.poison.append((record, poison))
                continue
            polled.items.append(Delivery(envelope, event, tp.partition))
            polled.records.append(record)
        polled.first[tp] = records[0].offset
        polled.offsets[tp] = records[-1].offset + 1
        polled.newest[tp] = records[-1].timestamp
    return polled


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are handed over only after the batch in flight committed.

    aiokafka awaits `on_partitions_revoked` before it rejoins the group, so the
    next owner of a partition cannot apply its events while this process still
    has a transaction open on them (the inbox drops a repeat, but only a
    repeat that comes after the first commit).
    """

    def __init__(self, owner: ActivityConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if not revoked:  # the first join: nothing polled yet
            return
        self._owner.generation += 1  # a prefetched batch is stale from here on
        try:
            async with asyncio.timeout(self._owner.handover_seconds):
                async with self._owner.applying:
                    pass
        except TimeoutError:
            log.warning("the batch in flight did not finish before the rebalance")

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.progress.changed.set()


class ActivityConsumer:
    """Consumes the activity topic in a consumer group with manual offset commits.

    Pipelined: while one batch is applied and its offsets committed, the next
    one is polled and decoded. Offsets are still committed only after the
    database transaction that applied their events committed, batches are
    applied one at a time in poll order, and a batch polled before a
    rebalance is dropped (re-read from the committed offsets), never applied.
    """

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
        self.generation = 0
        self.applying = asyncio.Lock()  # held from taking a batch until its offsets are committed
        self.handover_seconds = settings.db_timeout_seconds + 10
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            fetch_max_bytes=16 * 1024 * 1024,
            # The broker answers a fetch as soon as one record is there: a longer
            # wait only means fewer empty round trips while idle.
            fetch_max_wait_ms=1000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer.subscribe([settings.activity_topic], listener=_Rebalance(self))

    async def run(self) -> None:
        await self._consumer.start()
        stop = asyncio.create_task(self._stopping.wait())
        polling = asyncio.create_task(self._poll())
        try:
            while True:
                await asyncio.wait([polling, stop], return_when=asyncio.FIRST_COMPLETED)
                if self._stopping.is_set():
                    break
                polled = polling.result()
                polling = asyncio.create_task(self._poll())  # the next, while this one applies
                applied = polled is not None and await self._handle(polled)
                await self._update_progress(polled if applied else None, polling)
        finally:
            stop.cancel()
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await polling
            await self._consumer.stop()

    async def _poll(self) -> PolledBatch | None:
        generation = self.generation
        batches = await self._consumer.getmany(
            timeout_ms=self._settings.poll_timeout_ms,
            max_records=self._settings.batch_max_records,
        )
        if not batches:
            return None
        polled = decode_batch(batches, generation)
        for tp in polled.offsets:
            with contextlib.suppress(AssertionError, IllegalStateError):
                polled.ends[tp] = self._consumer.highwater(tp)
        return polled

    async def _update_progress(
        self, applied: PolledBatch | None, polling: asyncio.Task[PolledBatch | None]
    ) -> None:
        """Owned partitions, and those consumed to the end: the batch just applied took
        all the partition had when it was polled (records that arrived since are new,
        not a backlog), or, for a partition it did not touch, the position is at the log
        end and no batch polled ahead holds its records (the position is past those)."""
        ahead: set[TopicPartition] = set()
        if polling.done() and not polling.cancelled() and polling.exception() is None:
            ahead_batch = polling.result()
            ahead = set(ahead_batch.offsets) if ahead_batch is not None else set()
        owned = self._consumer.assignment()
        caught: set[int] = set()
        for tp in owned:
            try:
                if applied is not None and tp in applied.offsets:
                    end = applied.ends.get(tp)
                    if end is not None and applied.offsets[tp] >= end:
                        caught.add(tp.partition)
                    continue
                end = self._consumer.highwater(tp)
                if end is not None and tp not in ahead and await self._consumer.position(tp) >= end:
                    caught.add(tp.partition)
            except (AssertionError, IllegalStateError):
                # Revoked by a rebalance since assignment() was read: not ours now.
                continue
        self.progress.update(frozenset(tp.partition for tp in owned), frozenset(caught))

    def _rewind(self, polled: PolledBatch) -> None:
        """A batch polled before a rebalance is not applied: read it again where it is
        still ours (the position already moved past it); its new owner starts from the
        committed offsets anyway."""
        for tp, first in polled.first.items():
            with contextlib.suppress(AssertionError, IllegalStateError):
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, first)
        log.info("dropped a batch polled before a rebalance; it is read again")

    async def _handle(self, polled: PolledBatch) -> bool:
        """Apply the batch and commit its offsets; False if it was dropped or not applied."""
        async with self.applying:
            if polled.generation != self.generation:
                self._rewind(polled)
                return False
            applied = await self._apply_and_commit(polled)
        self.progress.changed.set()  # a batch may have brought a review forward
        return applied

    async def _apply_and_commit(self, polled: PolledBatch) -> bool:
        for record, poison in polled.poison:
            await self._dead_letter(record, poison)
        items = polled.items
        started = time.perf_counter()
        result = await self._apply_isolating(items, polled.records)
        if result is None:  # stopping while the database was down: commit nothing
            return False
        PROCESSING_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(len(items))
        DUPLICATES.inc(result.duplicates)
        self.progress.events_since_cutoffs += result.applied
        for item in items:
            EVENTS_CONSUMED.labels(type=item.envelope.type).inc()
        for change in result.changes:
            CLASS_CHANGES.labels(dimension=change.dimension, reason=change.reason.value).inc()
        try:
            await self._consumer.commit(polled.offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved during a rebalance; their new owner sees the
            # events again and the inbox drops them.
            log.warning("offset commit failed after a committed batch: %s", exc)
        self._record_lag(polled.offsets, polled.newest)
        return True

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
