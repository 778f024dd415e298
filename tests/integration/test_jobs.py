"""Activation and recompute as worker jobs: claimed once, progress, cancel, resumed after a kill."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from classifier.app import create_app
from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.db import make_sessionmaker, unit_of_work
from classifier.engine import default_scheme_text, to_micros
from classifier.jobs import repository
from classifier.jobs.runner import JobRunner
from classifier.models import ClassChange, Customer, Job
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.changes import ChangeReason
from eventschemas.events import OrderPlaced
from tests.kafka_helpers import eventually
from tests.processes import service_env, start, stop, worker_command
from tests.snapshots import create_database, drop_database

pytestmark = pytest.mark.integration

FROZEN_NOW = datetime(2026, 11, 2, tzinfo=UTC)
# Regular buyers need 3 orders a year instead of 4: customers with 3 change class.
CHANGED = ("- {feature: orders_365d, gte: 4}", "- {feature: orders_365d, gte: 3}")
FINISHED = ("succeeded", "failed", "cancelled")


def orders(customers: int) -> list[OrderPlaced]:
    """1 to 5 orders per customer over the last year before FROZEN_NOW."""
    events = []
    for i in range(customers):
        for k in range(i % 5 + 1):
            events.append(
                OrderPlaced(
                    customer_id=f"c-{i:05d}",
                    order_id=f"c-{i:05d}-o-{k}",
                    amount=Decimal(50 + 10 * (i % 7)),
                    currency="USD",
                    amount_base=Decimal(50 + 10 * (i % 7)),
                    base_currency="USD",
                    placed_at=FROZEN_NOW - timedelta(days=20 + 60 * k + i % 11),
                )
            )
    return events


async def seed(sessions: async_sessionmaker[AsyncSession], customers: int) -> None:
    """Customers as a worker leaves them at FROZEN_NOW (every due review done)."""
    await ensure_active_scheme(sessions)
    processor = BatchProcessor(sessions, SchemeCache())
    events = orders(customers)
    for start_at in range(0, len(events), 500):
        page = events[start_at : start_at + 500]
        await processor.process([Delivery(e.to_envelope("test"), e, partition=0) for e in page])
    while await processor.review_due(to_micros(FROZEN_NOW), 1000):
        pass


async def classes(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as session:
        rows = await session.execute(select(Customer.id, Customer.classes))
        return {
            cid: {dim: (c["class"], c["since"], c.get("rule")) for dim, c in cls.items()}
            for cid, cls in rows.all()
        }


async def scheme_changes(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).where(ClassChange.reason == ChangeReason.SCHEME_CHANGE)
        )
    return int(count or 0)


async def job_row(sessions: async_sessionmaker[AsyncSession], job_id: int) -> Job:
    async with sessions() as session:
        row = await session.get(Job, job_id)
    assert row is not None
    return row


@pytest.fixture
def api_for() -> Callable[[ClassifierSettings], Any]:
    """An in-process API (lifespan run, auth off) on the given settings' database."""

    @asynccontextmanager
    async def open_api(settings: ClassifierSettings) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update={"auth_enabled": False}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client

    return open_api


async def activate_changed_scheme(api: httpx.AsyncClient) -> int:
    source = default_scheme_text()
    assert CHANGED[0] in source
    draft = await api.post(
        "/v1/schemes",
        content=source.replace(*CHANGED).encode(),
        headers={"content-type": "application/yaml"},
    )
    assert draft.status_code == 201, draft.text
    started = await api.post(f"/v1/schemes/{draft.json()['version']}/activate", json={})
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"  # the API never runs the work
    return int(started.json()["id"])


def worker_env(settings: ClassifierSettings, chunk: int) -> dict[str, str]:
    return service_env(
        settings,
        CLASSIFIER_CLOCK_FROZEN_AT=FROZEN_NOW.isoformat(),
        CLASSIFIER_JOB_CHUNK_SIZE=str(chunk),
        CLASSIFIER_JOB_STALE_SECONDS="2",
        CLASSIFIER_JOB_HEARTBEAT_SECONDS="0.5",
        CLASSIFIER_CUTOFFS_INTERVAL_SECONDS="100000",
        CLASSIFIER_LOG_LEVEL="INFO",
    )


async def finished(api: httpx.AsyncClient, job_id: int) -> dict[str, Any] | None:
    body: dict[str, Any] = (await api.get(f"/v1/jobs/{job_id}")).json()
    return body if body["status"] in FINISHED else None


async def test_activation_killed_midway_resumes_and_ends_like_an_uninterrupted_one(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_for: Callable[[ClassifierSettings], Any],
    tmp_path: Path,
) -> None:
    customers, chunk = 400, 4
    # The uninterrupted run, in a database of its own seeded the same way.
    reference_url = await create_database(classifier_settings.database_url)
    reference_engine = create_async_engine(reference_url)
    reference_sessions = make_sessionmaker(reference_engine)
    reference_settings = classifier_settings.model_copy(update={"database_url": reference_url})
    log = tmp_path / "worker.log"
    try:
        await asyncio.gather(seed(sessions, customers), seed(reference_sessions, customers))
        assert await classes(sessions) == await classes(reference_sessions)

        async with api_for(reference_settings) as api:
            reference_id = await activate_changed_scheme(api)
            proc = start(worker_command(), worker_env(reference_settings, chunk), log)
            try:
                reference = await eventually(
                    lambda: finished(api, reference_id), within=180, interval=0.2
                )
            finally:
                assert stop(proc) == 0, log.read_text()[-3000:]
        assert reference["status"] == "succeeded"
        assert reference["done"] == reference["total"] == customers
        assert reference["attempts"] == 1
        assert reference["changes"] > 0

        async with api_for(classifier_settings) as api:
            job_id = await activate_changed_scheme(api)
            first = start(worker_command(), worker_env(classifier_settings, chunk), log)

            async def some_chunks_done() -> bool:
                return (await job_row(sessions, job_id)).done >= 20 * chunk

            try:
                await eventually(some_chunks_done, within=120, interval=0.01)
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait()
            killed = await job_row(sessions, job_id)
            assert killed.status == "running"  # left claimed by a dead worker
            assert 0 < killed.done < customers, "the job ended before the kill; use more customers"
            assert killed.cursor is not None

            second = start(worker_command(), worker_env(classifier_settings, chunk), log)
            try:
                resumed = await eventually(lambda: finished(api, job_id), within=180, interval=0.2)
            finally:
                assert stop(second) == 0, log.read_text()[-3000:]

        assert resumed["status"] == "succeeded", resumed
        assert resumed["attempts"] == 2  # taken over once, after its heartbeat went stale
        assert resumed["claimed_by"] != killed.claimed_by
        assert resumed["as_of"] == reference["as_of"]  # the same instant, kept in the row
        # Each customer counted once, and a chunk re-applied after the kill changed nothing.
        assert resumed["done"] == customers
        assert resumed["changes"] == reference["changes"]
        assert await scheme_changes(sessions) == await scheme_changes(reference_sessions)
        assert await scheme_changes(sessions) == resumed["changes"]
        assert await classes(sessions) == await classes(reference_sessions)
    finally:
        await reference_engine.dispose()
        await drop_database(classifier_settings.database_url, reference_url)


async def test_reevaluating_a_chunk_again_at_the_same_instant_changes_nothing(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_for: Callable[[ClassifierSettings], Any],
) -> None:
    """What makes resuming safe: a chunk applied twice (the worker died after the chunk
    committed, before its progress did) records its changes once."""
    await seed(sessions, 40)
    async with api_for(classifier_settings) as api:
        await activate_changed_scheme(api)  # the new version is active; no worker runs
    processor = BatchProcessor(sessions, SchemeCache())
    async with sessions() as session:
        ids = await repository.customer_ids_after(session, None, 1000)
    now = to_micros(FROZEN_NOW)
    first = await processor.reevaluate(ids, now, ChangeReason.SCHEME_CHANGE)
    assert first  # customers with 3 orders a year became regular buyers
    before = await classes(sessions)
    again = await processor.reevaluate(ids, now, ChangeReason.SCHEME_CHANGE)
    assert again == []
    assert await classes(sessions) == before
    assert await scheme_changes(sessions) == len(first)


async def test_progress_and_cancel_of_a_running_job(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_for: Callable[[ClassifierSettings], Any],
) -> None:
    await seed(sessions, 400)
    settings = classifier_settings.model_copy(update={"job_chunk_size": 2})
    runner = JobRunner(
        settings,
        sessions,
        BatchProcessor(sessions, SchemeCache()),
        system_clock(frozen_at=FROZEN_NOW),
    )
    stopping = asyncio.Event()
    async with api_for(classifier_settings) as api:
        queued = await api.post("/v1/jobs", json={"kind": "recompute"})
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]
        assert queued.headers["location"] == f"/v1/jobs/{job_id}"
        assert (await api.post("/v1/jobs", json={})).status_code == 409  # one at a time
        task = asyncio.create_task(runner.run(stopping))
        try:

            async def progressing() -> dict[str, Any] | None:
                body: dict[str, Any] = (await api.get(f"/v1/jobs/{job_id}")).json()
                return body if body["status"] == "running" and body["done"] >= 20 else None

            running = await eventually(progressing, within=30, interval=0.02)
            assert running["total"] == 400
            assert running["claimed_by"] == runner.name
            cancelled = await api.post(f"/v1/jobs/{job_id}:cancel")
            assert cancelled.status_code == 202
            assert cancelled.json()["cancel_requested_at"] is not None
            done = await eventually(lambda: finished(api, job_id), within=30)
            assert done["status"] == "cancelled"
            assert done["done"] < 400  # stopped at a chunk boundary, not at the end
            assert done["done"] % 2 == 0
            again = await api.post(f"/v1/jobs/{job_id}:cancel")
            assert again.status_code == 409
            listed = (await api.get("/v1/jobs", params={"status": "cancelled"})).json()["jobs"]
            assert [j["id"] for j in listed] == [job_id]
            # The runner is free again: a new job is taken at once (NOTIFY wakes it).
            nxt = (await api.post("/v1/jobs", json={"silent": True})).json()
            done = await eventually(lambda: finished(api, nxt["id"]), within=60)
            assert done["status"] == "succeeded"
            assert done["done"] == 400
        finally:
            stopping.set()
            await asyncio.wait_for(task, timeout=30)


async def test_a_queued_job_is_cancelled_at_once_and_unknown_ones_are_404(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_for: Callable[[ClassifierSettings], Any],
) -> None:
    await seed(sessions, 3)
    async with api_for(classifier_settings) as api:
        job_id = await activate_changed_scheme(api)  # no worker runs: it stays queued
        assert (await api.get(f"/v1/activations/{job_id}")).json()["status"] == "queued"
        cancelled = await api.post(f"/v1/activations/{job_id}:cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["finished_at"] is not None
        assert (await api.post("/v1/jobs/999999:cancel")).status_code == 404
        assert (await api.get("/v1/jobs/999999")).status_code == 404
        recompute = (await api.post("/v1/jobs", json={})).json()
        # A recompute is a job, not an activation.
        assert (await api.get(f"/v1/activations/{recompute['id']}")).status_code == 404


async def test_two_runners_claiming_at_once_take_a_job_once(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_for: Callable[[ClassifierSettings], Any],
) -> None:
    await seed(sessions, 3)
    clock = system_clock(frozen_at=FROZEN_NOW)
    runners = [
        JobRunner(classifier_settings, sessions, BatchProcessor(sessions, SchemeCache()), clock)
        for _ in range(4)
    ]
    async with api_for(classifier_settings) as api:
        await api.post("/v1/jobs", json={})
    claims = await asyncio.gather(*(r.claim() for r in runners))
    assert sum(c is not None for c in claims) == 1
    # A claim whose heartbeat is fresh is not taken over.
    assert await asyncio.gather(*(r.claim() for r in runners)) == [None] * 4
    [job] = [c for c in claims if c is not None]
    owner = runners[claims.index(job)]
    other = next(r for r in runners if r is not owner)
    async with unit_of_work(sessions) as session:  # its worker stopped heartbeating
        await session.execute(
            update(Job).where(Job.id == job.id).values(heartbeat_at=func.now() - timedelta(hours=1))
        )
    taken = await other.claim()
    assert taken is not None
    assert (taken.id, taken.attempts, taken.as_of) == (job.id, 2, job.as_of)
    # The first worker, if it was only slow, is fenced off: its progress is refused.
    async with unit_of_work(sessions) as session:
        assert not await repository.heartbeat(session, job.id, owner.name)
        stale = await repository.advance(session, job.id, owner.name, cursor="c-9", done=1)
        assert stale is None
        assert not await repository.count_changes(session, job.id, owner.name, 1)


async def test_a_stopping_worker_hands_its_job_back_and_another_finishes_it(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api_for: Callable[[ClassifierSettings], Any],
) -> None:
    await seed(sessions, 200)
    settings = classifier_settings.model_copy(update={"job_chunk_size": 2})
    clock = system_clock(frozen_at=FROZEN_NOW)

    def runner() -> JobRunner:
        return JobRunner(settings, sessions, BatchProcessor(sessions, SchemeCache()), clock)

    async with api_for(classifier_settings) as api:
        job_id = (await api.post("/v1/jobs", json={})).json()["id"]
        first, stopping = runner(), asyncio.Event()
        task = asyncio.create_task(first.run(stopping))
        await eventually(lambda: _done_at_least(sessions, job_id, 10), within=30, interval=0.02)
        stopping.set()  # SIGTERM: the chunk in flight ends, then the job goes back
        await asyncio.wait_for(task, timeout=30)
        handed = await job_row(sessions, job_id)
        assert (handed.status, handed.claimed_by) == ("queued", None)
        assert handed.cursor is not None
        assert 0 < handed.done < 200
        second, stopping = runner(), asyncio.Event()
        task = asyncio.create_task(second.run(stopping))
        try:
            done = await eventually(lambda: finished(api, job_id), within=60)
        finally:
            stopping.set()
            await asyncio.wait_for(task, timeout=30)
    assert done["status"] == "succeeded"
    assert done["done"] == 200
    assert done["claimed_by"] == second.name
    assert done["attempts"] == 1  # a handed-back claim is not a failed attempt


async def _done_at_least(sessions: async_sessionmaker[AsyncSession], job_id: int, n: int) -> bool:
    return (await job_row(sessions, job_id)).done >= n
