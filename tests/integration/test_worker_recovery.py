"""Crash safety, replay and scale-out of the worker, on real Kafka and PostgreSQL.

Every run is compared with a clean replay of the same stream into a second
empty database: facts, classes with explanations, history and change ids
must come out identical.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.generate import population
from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.consumer.progress import PartitionProgress
from classifier.consumer.replay import NotEmpty, replay
from classifier.db import make_sessionmaker
from classifier.models import ClassChange, Customer, ProcessedEvent
from classifier.processing.batch import BatchProcessor
from classifier.schemes.cutoffs import refresh_cutoffs
from classifier.schemes.service import SchemeCache
from classifier.worker import run_worker
from tests.kafka_helpers import eventually, publish_raw, read_topic, topic_size
from tests.processes import service_env, start, stop, worker_command
from tests.snapshots import create_database, drop_database, snapshot

pytestmark = pytest.mark.integration


# The stream ends on 2026-11-01; both the worker processes and the replay see
# time stop a day later, so their catch-up to "now" is the same instant.
STREAM_END = datetime(2026, 11, 1, tzinfo=UTC)
FROZEN_NOW = STREAM_END + timedelta(days=1)


def stream(seed: int, customers: int) -> list[tuple[bytes, bytes]]:
    """A realistic stream: every customer's events in time order, customers interleaved."""
    events = [e for _, evs in population(seed, customers, STREAM_END) for e in evs]
    events.sort(key=lambda e: e.occurred_at())
    return [(e.customer_id.encode(), e.to_envelope("test").to_bytes()) for e in events]


FIELDS = (
    "facts",
    "classes",
    "features",
    "evaluated_at",
    "next_review_at",
    "order_count",
    "net_revenue",
)


# These runs compare with a replay, which computes cut-offs once at its end: the live
# workers compute them only when the test says so (no start-up or population triggers;
# the 5-minute schedule does not come round within a test).
STEADY_CUTOFFS = {"cutoffs_on_start": False, "cutoffs_population_share": 0.0}
STEADY_CUTOFFS_ENV = {
    "CLASSIFIER_CUTOFFS_ON_START": "false",
    "CLASSIFIER_CUTOFFS_POPULATION_SHARE": "0",
}


@pytest.fixture
def classifier_settings(classifier_settings: ClassifierSettings) -> ClassifierSettings:
    return classifier_settings.model_copy(update=STEADY_CUTOFFS)


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Name the first customer and field that differ, for a readable failure."""
    for cid in sorted(set(a["customers"]) | set(b["customers"])):
        left, right = a["customers"].get(cid), b["customers"].get(cid)
        if left is None or right is None:
            return f"{cid} only in one snapshot"
        for name, x, y in zip(FIELDS, left, right, strict=True):
            if x != y:

                def story(snap: dict[str, Any], cid: str = cid) -> list[Any]:
                    return [h[1:5] + h[6:] for h in snap["history"] if h[0] == cid]

                only_a = [h for h in story(a) if h not in story(b)]
                only_b = [h for h in story(b) if h not in story(a)]
                return (
                    f"{cid}.{name} differs; history only in run: {only_a}; only in replay: {only_b}"
                )
    return "no difference"


async def applied_at_least(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    async with sessions() as session:
        applied = await session.scalar(select(func.count()).select_from(ProcessedEvent))
    return (applied or 0) >= count


async def settled(sessions: async_sessionmaker[AsyncSession], expected_events: int) -> bool:
    """Every event applied, every due review done, and every change relayed."""
    async with sessions() as session:
        applied = await session.scalar(select(func.count()).select_from(ProcessedEvent))
        due = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.next_review_at <= FROZEN_NOW)
        )
        unpublished = await session.scalar(
            select(func.count()).select_from(ClassChange).where(ClassChange.published_at.is_(None))
        )
    return applied == expected_events and due == 0 and unpublished == 0


async def recompute_cutoffs_at_frozen_now(sessions: async_sessionmaker[AsyncSession]) -> None:
    """What a running worker does on its next cut-off tick (every 5 minutes, or after a
    bulk load), and a replay does before its time catch-up: rank cut-offs over the whole
    population, then the reviews they make due. Without it the live run and the replay
    differ only by when the cut-offs were computed."""
    now = system_clock(frozen_at=FROZEN_NOW)()
    schemes = SchemeCache()
    await refresh_cutoffs(sessions, schemes, now)
    processor = BatchProcessor(sessions, schemes)
    while await processor.review_due(now, 1000):
        pass


@pytest.fixture
async def clean_replay(
    classifier_settings: ClassifierSettings,
) -> AsyncIterator[Any]:
    """Replays the activity topic into a second empty database and snapshots it."""
    urls: list[str] = []

    async def run() -> dict[str, Any]:
        url = await create_database(classifier_settings.database_url)
        urls.append(url)
        engine = create_async_engine(url)
        try:
            settings = classifier_settings.model_copy(update={"database_url": url})
            result = await replay(
                settings, make_sessionmaker(engine), system_clock(frozen_at=FROZEN_NOW)
            )
            assert result.skipped_poison == 0
        finally:
            await engine.dispose()
        return await snapshot(url)

    yield run
    for url in urls:
        await drop_database(classifier_settings.database_url, url)


def with_redeliveries(records: list[tuple[bytes, bytes]], seed: int) -> list[tuple[bytes, bytes]]:
    """The stream with 5 % of its events sent again later (a producer retry, a re-upload)."""
    rng = random.Random(seed)
    out = list(records)
    for i in sorted(rng.sample(range(len(records)), len(records) // 20), reverse=True):
        out.insert(rng.randint(i + 1, len(records)), records[i])
    return out


@pytest.mark.parametrize("processes", [1, 2], ids=["1-worker", "2-workers"])
async def test_sigkilled_worker_ends_exactly_like_a_clean_replay(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    clean_replay: Any,
    tmp_path: Path,
    processes: int,
) -> None:
    """Real worker processes in one group, SIGKILLed one at a time while batches are in
    flight and restarted: every event (redeliveries included) is applied exactly once."""
    unique = stream(seed=11, customers=300)
    records = with_redeliveries(unique, seed=3)
    bootstrap = classifier_settings.kafka_bootstrap_servers
    await publish_raw(bootstrap, classifier_settings.activity_topic, records)
    env = service_env(
        classifier_settings,
        CLASSIFIER_BATCH_MAX_RECORDS="25",
        CLASSIFIER_REVIEW_INTERVAL_SECONDS="0.2",
        CLASSIFIER_SESSION_TIMEOUT_MS="6000",
        CLASSIFIER_HEARTBEAT_INTERVAL_MS="500",
        CLASSIFIER_LOG_LEVEL="DEBUG",
        CLASSIFIER_CLOCK_FROZEN_AT=FROZEN_NOW.isoformat(),
        **STEADY_CUTOFFS_ENV,
    )
    logs = [tmp_path / f"worker-{n}.log" for n in range(processes)]
    rng = random.Random(5)
    kill_at = sorted(rng.sample(range(50, len(unique) - 50), 4))  # applied-event counts
    procs = [start(worker_command(), env, log) for log in logs]
    try:
        for n, threshold in enumerate(kill_at):  # several kill points, batches in flight
            await eventually(
                lambda t=threshold: applied_at_least(sessions, t), within=60, interval=0.02
            )
            victim = n % processes  # with two, each dies in turn while the other runs on
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            procs[victim] = start(worker_command(), env, logs[victim])
        await eventually(lambda: settled(sessions, len(unique)), within=120, interval=0.5)
        await recompute_cutoffs_at_frozen_now(sessions)
        # ... and the running workers' relays announce what they changed.
        await eventually(lambda: settled(sessions, len(unique)), within=60, interval=0.5)
    finally:
        codes = [stop(proc) for proc in procs]
    tails = "".join(log.read_text()[-2000:] for log in logs)
    assert codes == [0] * processes, tails

    killed = await snapshot(classifier_settings.database_url)
    replayed = await clean_replay()

    assert killed["customers"] == replayed["customers"], first_difference(killed, replayed)
    assert killed["history"] == replayed["history"]
    assert killed["changes"] == replayed["changes"]
    topic = classifier_settings.class_changes_topic
    expected = len(killed["changes"])
    records = await read_topic(bootstrap, topic, expected=expected, within=60)
    announced = [dict(r.headers)["change_id"].decode() for r in records]
    total_on_topic = await topic_size(bootstrap, topic)
    missing = set(killed["changes"]) - set(announced)
    assert len(announced) == len(set(announced)), "a change was published twice"
    rows: list[Any] = []
    if missing:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(ClassChange.seq, ClassChange.created_at, ClassChange.published_at)
                    .where(ClassChange.change_id.in_(missing))
                    .order_by(ClassChange.seq)
                )
            ).all()
    assert not missing, (
        f"{len(missing)} changes lost; read {len(records)} of {total_on_topic} records "
        f"on the topic, expected {expected}; rows: {rows[:5]}; kills at {kill_at}; "
        f"worker log tails: {tails}"
    )


async def test_two_workers_split_partitions_and_one_leaving_loses_nothing(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    clean_replay: Any,
) -> None:
    records = stream(seed=12, customers=300)
    bootstrap = classifier_settings.kafka_bootstrap_servers
    await publish_raw(bootstrap, classifier_settings.activity_topic, records)
    settings = classifier_settings.model_copy(update={"batch_max_records": 10})
    clock = system_clock(frozen_at=FROZEN_NOW)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    seen_a, seen_b = PartitionProgress(), PartitionProgress()
    worker_a = asyncio.create_task(run_worker(settings, stop_a, clock=clock, progress=seen_a))
    worker_b = asyncio.create_task(run_worker(settings, stop_b, clock=clock, progress=seen_b))

    async def split() -> bool:
        return bool(seen_a.owned and seen_b.owned) and not seen_a.owned & seen_b.owned

    try:
        await eventually(split, within=30, interval=0.05)
        assert seen_a.owned | seen_b.owned == {0, 1, 2}
        assert not await settled(sessions, len(records))  # B leaves with a backlog left
        stop_b.set()
        await asyncio.wait_for(worker_b, timeout=30)
        await eventually(lambda: settled(sessions, len(records)), within=120, interval=0.5)
        assert seen_a.owned == {0, 1, 2}  # A took over B's partitions
        await recompute_cutoffs_at_frozen_now(sessions)
        await eventually(lambda: settled(sessions, len(records)), within=60, interval=0.5)
    finally:
        stop_a.set()
        stop_b.set()
        await asyncio.wait_for(asyncio.gather(worker_a, worker_b), timeout=30)

    together = await snapshot(classifier_settings.database_url)
    alone = await clean_replay()

    assert together["customers"] == alone["customers"], first_difference(together, alone)
    assert together["history"] == alone["history"]
    assert together["changes"] == alone["changes"]


async def test_replay_refuses_a_database_that_holds_state(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        session.add(ProcessedEvent(event_id="e-1", customer_id="c-1"))

    with pytest.raises(NotEmpty):
        await replay(classifier_settings, sessions, system_clock())


async def test_replay_ranks_customers_before_it_ends(
    classifier_settings: ClassifierSettings, clean_replay: Any
) -> None:
    """A replay computes the population cut-offs itself: customers end in their real
    tier, so a worker started afterwards has nothing to move (no C-then-A flood)."""
    records = stream(seed=13, customers=200)
    await publish_raw(
        classifier_settings.kafka_bootstrap_servers, classifier_settings.activity_topic, records
    )
    replayed = await clean_replay()
    tiers = [
        classes["abc_tier"]["class"]
        for _facts, classes, *_rest in replayed["customers"].values()
        if "abc_tier" in classes
    ]
    assert tiers.count("A") > 0, "no customer ranked A: cut-offs were not computed"
    assert tiers.count("A") < tiers.count("C")  # a few top buyers, not everyone
