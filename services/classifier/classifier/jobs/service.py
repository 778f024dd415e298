"""Control of jobs for the API: queue, read, cancel. The work itself runs in a worker."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier import audit
from classifier.db import unit_of_work
from classifier.errors import Conflict, NotFound
from classifier.jobs import repository
from classifier.models import Job
from classifier.schemes import repository as schemes


async def ensure_none_unfinished(session: AsyncSession) -> None:
    running = await repository.unfinished(session)
    if running is not None:
        raise Conflict(f"job {running.id} ({running.kind}) is still {running.status}")


async def queue(session: AsyncSession, job: Job) -> Job:
    """Insert a queued job; a concurrent one that won the one-unfinished index is a 409."""
    try:
        async with session.begin_nested():
            return await repository.add(session, job)
    except IntegrityError as exc:
        raise Conflict("another job is queued or running") from exc


async def queue_recompute(
    sessions: async_sessionmaker[AsyncSession],
    *,
    silent: bool,
    created_by: str | None,
    actor: str,
) -> Job:
    """Queue a re-evaluation of everyone under the active version (audited: `job.create`)."""
    async with unit_of_work(sessions) as session:
        await ensure_none_unfinished(session)
        version = await schemes.get_active_version(session)
        if version is None:
            raise Conflict("no active scheme yet; a worker seeds one when it starts")
        job = Job(
            kind="recompute",
            version=version,
            silent=silent,
            status="queued",
            total=await repository.count_customers(session),
            created_by=created_by,
        )
        await queue(session, job)
        details = {"job_id": job.id, "kind": job.kind, "version": version, "silent": silent}
        await audit.record(session, actor, "job.create", f"job:{job.id}", details)
        return job


async def get(session: AsyncSession, job_id: int, *, kind: str | None = None) -> Job:
    row = await repository.get(session, job_id)
    if row is None or (kind is not None and row.kind != kind):
        raise NotFound(f"no {'activation' if kind == 'activate' else 'job'} {job_id}")
    return row


async def cancel(
    sessions: async_sessionmaker[AsyncSession],
    job_id: int,
    *,
    actor: str,
    kind: str | None = None,
) -> Job:
    """Cancel a queued job, or have its worker stop at the next chunk boundary (audited:
    `scheme.activation_cancel` for an activation, `job.cancel` for another job)."""
    async with unit_of_work(sessions) as session:
        row = await get(session, job_id, kind=kind)
        updated = await repository.request_cancel(session, job_id)
        if updated is None:
            raise Conflict(f"job {job_id} already {row.status}")
        action = "scheme.activation_cancel" if updated.kind == "activate" else "job.cancel"
        details = {"job_id": job_id, "kind": updated.kind, "version": updated.version}
        await audit.record(session, actor, action, f"job:{job_id}", details)
        return updated
