"""Rebuild all state from the activity topic into an empty database, and re-evaluate everyone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.consumer.decoding import PoisonMessage, decode
from classifier.db import unit_of_work
from classifier.processing import repository
from classifier.processing.batch import BatchProcessor, Delivery, IdentityOptions
from classifier.schemes.cutoffs import refresh_cutoffs
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from classifier.topics import topic_partitions
from eventschemas.changes import ChangeReason

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (done, total)


class NotEmpty(RuntimeError):
    """Replay only fills an empty database; it never mixes with existing state."""


@dataclass(slots=True)
class ReplayResult:
    events: int
    skipped_poison: int
    changes: int
    seconds: float


async def replay(
    settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    progress: Progress | None = None,
    announce: bool = False,
    commit_group: str | None = None,
) -> ReplayResult:
    """Apply every activity event up to the current end of the topic, then catch up on time.

    With `commit_group`, that consumer group's offsets are set to where the
    replay stopped, so a worker started afterwards continues from there.
    """
    started = time.perf_counter()
    async with sessions() as session:
        if not await repository.is_empty(session):
            raise NotEmpty("the database already holds state; replay needs an empty one")
    await ensure_active_scheme(sessions, settings.scheme_file)
    schemes = SchemeCache()
    processor = BatchProcessor(sessions, schemes, identity=IdentityOptions.of(settings))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        max_poll_records=settings.batch_max_records,
    )
    await consumer.start()
    events = poison = changes = 0
    try:
        tps = await topic_partitions(consumer, settings.activity_topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            items: list[Delivery] = []
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        envelope, event = decode(record.value, record.headers)
                    except PoisonMessage:
                        poison += 1
                        continue
                    items.append(Delivery(envelope, event, tp.partition))
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            result = await processor.process(items)
            events += result.applied
            changes += len(result.changes)
            if progress:
                done = sum([min(await consumer.position(tp), ends[tp]) - starts[tp] for tp in tps])
                progress(done, total)
        if commit_group:
            await _commit_offsets(settings, commit_group, {tp: ends[tp] for tp in tps})
    finally:
        await consumer.stop()
    changes += await _catch_up(processor, sessions, clock)
    # Rank cut-offs over the replayed population before the replay ends, and the
    # reviews they make due: without them every customer would rank in the lowest
    # class until a worker computed cut-offs minutes later, and a worker started
    # now would announce them moving down and back up. (After the time catch-up,
    # as a live worker's cut-off tick comes after its backlog: a replay ends
    # exactly like the live run of the same stream.)
    flagged = await refresh_cutoffs(sessions, schemes, clock())
    log.info("replay: population cut-offs computed, %s customers re-ranked", flagged)
    changes += await _catch_up(processor, sessions, clock)
    if not announce:
        async with unit_of_work(sessions) as session:
            await repository.mark_all_published(session)
    return ReplayResult(events, poison, changes, time.perf_counter() - started)


async def _catch_up(
    processor: BatchProcessor, sessions: async_sessionmaker[AsyncSession], clock: Clock
) -> int:
    total = 0
    while changes := await processor.review_due(clock(), 1000):
        total += len(changes)
    return total


async def _commit_offsets(
    settings: ClassifierSettings, group: str, offsets: dict[TopicPartition, int]
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def recompute(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    progress: Progress | None = None,
    page: int = 500,
    reason: ChangeReason = ChangeReason.SCHEME_CHANGE,
    announce: bool = True,
) -> int:
    """Re-evaluate every customer under the active scheme at now; returns the changes."""
    processor = BatchProcessor(sessions, SchemeCache())
    async with sessions() as session:
        total = await repository.count_customers(session)
    done = changes = 0
    after: str | None = None
    while True:
        async with sessions() as session:
            ids = await repository.customer_ids_page(session, after=after, limit=page)
        if not ids:
            return changes
        changes += len(await processor.reevaluate(ids, clock(), reason, announce=announce))
        done += len(ids)
        after = ids[-1]
        if progress:
            progress(done, total)
