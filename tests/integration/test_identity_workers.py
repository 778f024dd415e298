"""Merges across partitions and worker processes, with SIGKILLs (real Kafka and
PostgreSQL): the graph and classes end as one worker's replay in order, and no
customer is ever left half-merged."""

from __future__ import annotations

import asyncio
import random
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.consumer.replay import replay
from classifier.db import make_sessionmaker
from classifier.models import ClassChange, Customer, ProcessedEvent
from classifier.processing.batch import BatchProcessor
from classifier.schemes.cutoffs import refresh_cutoffs
from classifier.schemes.service import SchemeCache
from eventschemas.events import ActivityEvent, CallOutcome, Identity, identity_digest
from tests.integration.test_identity import KEY, T0, call, contact, order
from tests.kafka_helpers import eventually, publish_raw
from tests.processes import service_env, start, stop, worker_command
from tests.snapshots import create_database, drop_database

pytestmark = pytest.mark.integration
# Every event lies before this instant; workers and the replay see time stop there.
FROZEN_NOW = T0 + timedelta(days=1)


async def applied(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0)


async def settled(sessions: async_sessionmaker[AsyncSession], expected: int) -> bool:
    async with sessions() as session:
        due = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.next_review_at <= FROZEN_NOW)
        )
        unpublished = await session.scalar(
            select(func.count()).select_from(ClassChange).where(ClassChange.published_at.is_(None))
        )
    return await applied(sessions) == expected and due == 0 and unpublished == 0


async def cutoffs_and_reviews(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Population cut-offs at the frozen now and the reviews they make due (what a
    worker's next cut-off tick and a replay's catch-up do)."""
    now = system_clock(frozen_at=FROZEN_NOW)()
    schemes = SchemeCache()
    await refresh_cutoffs(sessions, schemes, now)
    processor = BatchProcessor(sessions, schemes)
    while await processor.review_due(now, 1000):
        pass


def people(seed: int, count: int) -> list[ActivityEvent]:
    """Each person reaches us under two or three ids (shop, telesales, CRM), tied by an
    e-mail or a phone; a few share a switchboard number with others."""
    rng = random.Random(seed)
    events: list[ActivityEvent] = []
    for n in range(count):
        mail = identity_digest(KEY, "email", f"p{n}@example.cn")
        tel = identity_digest(KEY, "phone", f"+8613{seed:03d}{n:06d}")
        shop, desk, crm = f"shop-{n:03d}", f"tel-{n:03d}", f"crm-{n:03d}"
        for k in range(rng.randint(1, 4)):
            events.append(
                order(shop, k + 10 * n, Identity(email_hash=mail) if k == 0 else None, 300 * k)
            )
        events.append(call(desk, n, Identity(phone_hash=tel), rng.choice(list(CallOutcome))))
        if rng.random() < 0.6:  # the CRM knows both: it ties shop and telesales
            events.append(contact(crm, Identity(email_hash=mail, phone_hash=tel)))
        if rng.random() < 0.3:
            events.append(call(desk, n + 1000, Identity(email_hash=mail), CallOutcome.INTERESTED))
    for event in events:  # inside the stream's last day: the frozen "now" comes after all
        assert event.occurred_at() < FROZEN_NOW - timedelta(hours=1)
    rng.shuffle(events)
    return events


async def _at_least(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    return await applied(sessions) >= count


def _starts(log: Path) -> int:
    return log.read_text().count('"msg":"worker started') if log.exists() else 0


async def _restarted(log: Path, before: int) -> bool:
    return await asyncio.to_thread(_starts, log) > before


async def outcome(url: str) -> dict[str, Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            customers = {
                r.id: (
                    r.merged_into,
                    r.order_count,
                    r.call_count,
                    {d: c["class"] for d, c in r.classes.items()},
                )
                for r in await conn.execute(
                    text("SELECT id, merged_into, order_count, call_count, classes FROM customers")
                )
            }
            links = {
                (r.kind, r.digest): r.customer_id
                for r in await conn.execute(
                    text("SELECT kind, digest, customer_id FROM identity_links")
                )
            }
            half = (
                await conn.execute(
                    text(
                        "SELECT c.id FROM customers c WHERE c.merged_into IS NOT NULL AND ("
                        " EXISTS (SELECT 1 FROM customer_facts f WHERE f.customer_id = c.id)"
                        " OR EXISTS (SELECT 1 FROM customer_classes k WHERE k.customer_id = c.id)"
                        " OR EXISTS (SELECT 1 FROM identity_links l WHERE l.customer_id = c.id)"
                        " OR EXISTS (SELECT 1 FROM customers s WHERE s.merged_into = c.id))"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return {"customers": customers, "links": links, "half_merged": [r.id for r in half]}


async def test_killed_workers_across_partitions_end_as_one_replay_in_order(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    events = people(seed=7, count=60)
    # Keyed by each event's own id: one person's events land on different partitions.
    records = [(e.customer_id.encode(), e.to_envelope("identity").to_bytes()) for e in events]
    await publish_raw(
        classifier_settings.kafka_bootstrap_servers, classifier_settings.activity_topic, records
    )
    env = service_env(
        classifier_settings,
        CLASSIFIER_BATCH_MAX_RECORDS="7",
        CLASSIFIER_SESSION_TIMEOUT_MS="6000",
        CLASSIFIER_HEARTBEAT_INTERVAL_MS="500",
        CLASSIFIER_CLOCK_FROZEN_AT=FROZEN_NOW.isoformat(),
        CLASSIFIER_IDENTITY_KEY=KEY.decode(),
    )
    logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
    procs = [start(worker_command(), env, log) for log in logs]
    try:
        for n, threshold in enumerate((40, 110, 170)):  # merges are in flight all along
            await eventually(lambda t=threshold: _at_least(sessions, t), within=60, interval=0.02)
            victim = n % 2
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            starts = _starts(logs[victim])
            procs[victim] = start(worker_command(), env, logs[victim])
            # Up (its SIGTERM handler in place) before the test may stop it: a worker
            # stopped while still importing ends by the signal, not by a clean stop.
            await eventually(lambda v=victim, s=starts: _restarted(logs[v], s), within=60)
        await eventually(lambda: settled(sessions, len(events)), within=120, interval=0.5)
        await cutoffs_and_reviews(sessions)
        await eventually(lambda: settled(sessions, len(events)), within=60, interval=0.5)
    finally:
        codes = [stop(proc) for proc in procs]
    tails = "".join(log.read_text()[-2000:] for log in logs)
    assert codes == [0, 0], tails

    live = await outcome(classifier_settings.database_url)
    url = await create_database(classifier_settings.database_url)
    try:
        engine = create_async_engine(url)
        try:
            settings = classifier_settings.model_copy(update={"database_url": url})
            result = await replay(
                settings, make_sessionmaker(engine), system_clock(frozen_at=FROZEN_NOW)
            )
            assert result.skipped_poison == 0
        finally:
            await engine.dispose()
        replayed = await outcome(url)
    finally:
        await drop_database(classifier_settings.database_url, url)
    assert live["half_merged"] == []
    survivors = {cid for cid, (into, *_) in live["customers"].items() if into is None}
    assert len(survivors) < 120  # people were merged (60 people under up to 180 ids)
    assert live["links"] == replayed["links"]
    assert live["customers"] == replayed["customers"]
