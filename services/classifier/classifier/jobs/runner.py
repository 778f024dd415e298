"""The worker's job runner: claims one job at a time and re-evaluates everyone in chunks.

A job is claimed with `FOR UPDATE SKIP LOCKED` and held by a heartbeat; a job
whose heartbeat is older than `job_stale_seconds` (its worker died) is claimed
again and resumes after its cursor, at the instant fixed in the row. A chunk
re-applied after a crash changes nothing: its customers already hold the
classes of that instant. Idle, the runner waits for NOTIFY (fallback poll).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.db import dsn, is_unavailable, unit_of_work
from classifier.jobs import repository
from classifier.models import Job
from classifier.models.job import JOBS_CHANNEL
from classifier.processing.batch import BatchProcessor
from classifier.processing.state import Change
from eventschemas.changes import ChangeReason

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    """Another worker took the job over (this one was too slow to heartbeat)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobRunner:
    def __init__(
        self,
        settings: ClassifierSettings,
        sessions: async_sessionmaker[AsyncSession],
        processor: BatchProcessor,
        clock: Clock,
        *,
        name: str | None = None,
        on_done: Callable[[Job], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_done = on_done  # e.g. recompute population cut-offs after an activation
        self._sessions = sessions
        self._processor = processor
        self._clock = clock
        self.name = name or worker_name()

    async def run(self, stopping: asyncio.Event) -> None:
        """Run jobs until `stopping` is set; a job in flight is handed back to the queue."""
        woken = asyncio.Event()
        listener = asyncio.create_task(self._listen(woken, stopping), name="jobs-listen")
        try:
            while not stopping.is_set():
                woken.clear()
                try:
                    job = await self.claim()
                except Exception as exc:
                    log.warning("job runner cannot claim (%s); retrying", type(exc).__name__)
                    job = None
                if job is not None:
                    await self.execute(job, stopping)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        _first(woken.wait(), stopping.wait()), self._settings.job_idle_seconds
                    )
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def claim(self) -> Job | None:
        """Claim a queued or abandoned job; fail one that used up its attempts."""
        async with unit_of_work(self._sessions) as session:
            job = await repository.claim(
                session, self.name, self._clock(), self._settings.job_stale_seconds
            )
            if job is None:
                return None
            if job.attempts > self._settings.job_max_attempts:
                await repository.finish(session, job.id, self.name, "failed", error="attempts")
                log.error("job %s failed: claimed %s times", job.id, job.attempts - 1)
                return None
            if job.cancel_requested_at is not None:  # asked to stop while its worker was dead
                await repository.finish(session, job.id, self.name, "cancelled")
                return None
        log.info(
            "job %s (%s, version %s) claimed by %s, attempt %s, after %r",
            job.id, job.kind, job.version, self.name, job.attempts, job.cursor,
        )  # fmt: skip
        return job

    async def execute(self, job: Job, stopping: asyncio.Event) -> None:
        """Run a claimed job to its end, or hand it back when the worker stops."""
        lost = asyncio.Event()
        beating = asyncio.create_task(self._heartbeat(job.id, lost), name=f"job-{job.id}-beat")
        try:
            status = await self._chunks(job, stopping, lost)
        except ClaimLost:
            log.warning("job %s was taken over by another worker; stopping here", job.id)
            return
        except Exception as exc:
            if is_unavailable(exc):  # the database is away: another claim resumes the job
                log.warning("job %s paused: database unavailable (%s)", job.id, type(exc).__name__)
                await asyncio.sleep(self._settings.db_retry_max_seconds)
                return
            log.exception("job %s failed", job.id)
            await self._finish(job.id, "failed", error=type(exc).__name__)
            return
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        if status is None:
            with contextlib.suppress(Exception):  # if this fails, the job goes stale instead
                async with unit_of_work(self._sessions) as session:
                    await repository.release(session, job.id, self.name)
            log.info("job %s handed back at %r (worker stopping)", job.id, job.cursor)
            return
        await self._finish(job.id, status)
        log.info("job %s %s", job.id, status)
        if self._on_done is not None and status == "succeeded":
            self._on_done(job)

    async def _chunks(self, job: Job, stopping: asyncio.Event, lost: asyncio.Event) -> str | None:
        """Re-evaluate chunk after chunk; the final status, or None when stopping.

        Up to `job_chunks_in_flight` chunks run at once, each in its own transaction
        on customers of its own: while one waits for the database, the next is
        evaluated. The cursor (and `done`) advances in order, past a chunk only once
        it and every chunk before it committed; a crash re-applies the chunks after
        the cursor, which changes nothing for those that had committed. `changes` is
        counted in each chunk's own transaction.
        """
        assert job.as_of is not None  # fixed by the claim
        as_of = job.as_of
        depth = self._settings.job_chunks_in_flight
        running: collections.deque[tuple[str, int, asyncio.Task[list[Change]]]] = (
            collections.deque()
        )
        fetched = job.cursor
        exhausted = cancelled = False

        async def counted(session: AsyncSession, changes: Sequence[Change]) -> None:
            if not await repository.count_changes(session, job.id, self.name, len(changes)):
                raise ClaimLost  # the chunk rolls back: the job is another worker's

        def start(ids: list[str]) -> None:
            work = self._processor.reevaluate(
                ids,
                as_of,
                ChangeReason.SCHEME_CHANGE,
                announce=not job.silent,
                # An activation evaluates what the new version changed; a recompute all.
                only=() if job.kind == "activate" else None,
                also=counted,
            )
            running.append((ids[-1], len(ids), asyncio.ensure_future(work)))

        try:
            while True:
                while not exhausted and len(running) < depth:
                    if cancelled or stopping.is_set() or lost.is_set():
                        break
                    async with self._sessions() as session:
                        ids = await repository.customer_ids_after(
                            session, fetched, self._settings.job_chunk_size
                        )
                    if not ids:
                        exhausted = True
                    else:
                        start(ids)
                        fetched = ids[-1]
                if not running:
                    if lost.is_set():
                        raise ClaimLost
                    if cancelled:
                        return "cancelled"
                    return "succeeded" if exhausted else None
                cursor, done, task = running[0]
                await task
                running.popleft()
                async with unit_of_work(self._sessions) as session:
                    row = await repository.advance(
                        session, job.id, self.name, cursor=cursor, done=done
                    )
                if row is None:
                    raise ClaimLost
                job.cursor = cursor
                # Asked to stop: no chunk is started; those running still count.
                cancelled = cancelled or row.cancel_requested_at is not None
        finally:
            # Chunks already started end as they would (commit or roll back); the
            # cursor stays before any that did not advance it.
            if running:
                await asyncio.gather(*(task for _, _, task in running), return_exceptions=True)

    async def _finish(self, job_id: int, status: str, *, error: str | None = None) -> None:
        try:
            async with unit_of_work(self._sessions) as session:
                await repository.finish(session, job_id, self.name, status, error=error)
        except Exception as exc:  # the job goes stale; the next claim finds nothing left
            log.warning("job %s: could not record %s (%s)", job_id, status, type(exc).__name__)

    async def _heartbeat(self, job_id: int, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._settings.job_heartbeat_seconds)
            try:
                async with unit_of_work(self._sessions) as session:
                    held = await repository.heartbeat(session, job_id, self.name)
            except Exception as exc:
                log.warning("job %s heartbeat failed (%s)", job_id, type(exc).__name__)
                continue
            if not held:
                lost.set()
                return

    async def _listen(self, woken: asyncio.Event, stopping: asyncio.Event) -> None:
        """LISTEN for queued jobs on a connection of its own; reconnect on loss."""
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(
                    dsn(self._settings.database_url), timeout=self._settings.db_timeout_seconds
                )
            except Exception as exc:
                log.warning("job runner cannot listen (%s)", type(exc).__name__)
                await asyncio.sleep(2)
                continue
            closed = asyncio.Event()
            try:
                conn.add_termination_listener(lambda _conn, closed=closed: closed.set())
                await conn.add_listener(JOBS_CHANNEL, lambda *_args: woken.set())
                woken.set()  # a job may have been queued while no one listened
                await _first(closed.wait(), stopping.wait())
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)


async def _first(*waits: Awaitable[object]) -> None:
    """Return when the first of these completes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
