"""SQL for jobs: queue, read, cancel (the API); claim, heartbeat, advance, finish (the worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.models import Customer, Job
from classifier.models.job import JOBS_CHANNEL, UNFINISHED

# An UPDATE ... RETURNING that hands back the row as it is now.
_RETURNED: dict[str, Any] = {"synchronize_session": False, "populate_existing": True}


async def add(session: AsyncSession, job: Job) -> Job:
    """Queue a job and wake the idle runners when the transaction commits."""
    session.add(job)
    await session.flush()
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})
    await session.refresh(job)
    return job


async def get(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id)


async def unfinished(session: AsyncSession) -> Job | None:
    return await session.scalar(select(Job).where(Job.status.in_(UNFINISHED)))


async def listing(
    session: AsyncSession, *, kind: str | None, status: str | None, before: int | None, limit: int
) -> Sequence[Job]:
    """Jobs newest first, optionally of one kind or status, with ids below `before`."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if before is not None:
        stmt = stmt.where(Job.id < before)
    return (await session.scalars(stmt)).all()


async def request_cancel(session: AsyncSession, job_id: int) -> Job | None:
    """Cancel a queued job now, or ask its runner to stop at the next chunk boundary.

    Returns the job as it is afterwards, or None when it was already finished.
    """
    queued = Job.status == "queued"
    return await session.scalar(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(UNFINISHED))
        .values(
            cancel_requested_at=func.coalesce(Job.cancel_requested_at, func.now()),
            # queued -> cancelled now; a running job stays running until its runner stops
            status=case((queued, "cancelled"), else_=Job.status),
            finished_at=case((queued, func.now()), else_=Job.finished_at),
        )
        .returning(Job)
        .execution_options(**_RETURNED)
    )


async def claim(session: AsyncSession, worker: str, now: int, stale_seconds: float) -> Job | None:
    """Take the oldest queued job, or a running one whose runner stopped heartbeating.

    `FOR UPDATE SKIP LOCKED`: two workers claiming at once never take the same
    row. The job's instant (`as_of`) is fixed by its first claim and kept.
    """
    stale = Job.heartbeat_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_seconds)
    candidate = (
        select(Job.id)
        .where(or_(Job.status == "queued", (Job.status == "running") & stale))
        .order_by(Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return await session.scalar(
        update(Job)
        .where(Job.id == candidate)
        .values(
            status="running",
            claimed_by=worker,
            claimed_at=func.now(),
            heartbeat_at=func.now(),
            attempts=Job.attempts + 1,
            as_of=func.coalesce(Job.as_of, now),
        )
        .returning(Job)
        .execution_options(**_RETURNED)
    )


async def heartbeat(session: AsyncSession, job_id: int, worker: str) -> bool:
    """Renew the claim; False when another worker has taken the job over."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == "running")
        .values(heartbeat_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def advance(
    session: AsyncSession, job_id: int, worker: str, *, cursor: str, done: int
) -> Job | None:
    """Record a finished chunk (cursor, customers done, heartbeat); None when the claim
    was lost."""
    return await session.scalar(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == "running")
        .values(cursor=cursor, done=Job.done + done, heartbeat_at=func.now())
        .returning(Job)
        .execution_options(**_RETURNED)
    )


async def count_changes(session: AsyncSession, job_id: int, worker: str, changes: int) -> bool:
    """Add a chunk's changes to the job, in the chunk's own transaction (so the count
    is exactly what was committed, whatever chunks a crash makes run again); False
    when the claim was lost."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == "running")
        .values(changes=Job.changes + changes)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def finish(
    session: AsyncSession, job_id: int, worker: str, status: str, *, error: str | None = None
) -> bool:
    """Mark the job succeeded, failed or cancelled, if this worker still holds it."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == "running")
        .values(status=status, error=error, finished_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def release(session: AsyncSession, job_id: int, worker: str) -> bool:
    """Hand a job back to the queue (a worker stopping); another claims it at once."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == "running")
        # A handed-back claim is not a failed attempt.
        .values(status="queued", claimed_by=None, heartbeat_at=None, attempts=Job.attempts - 1)
        .execution_options(synchronize_session=False)
    )
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})
    return bool(getattr(result, "rowcount", 0))


async def customer_ids_after(session: AsyncSession, after: str | None, limit: int) -> list[str]:
    """The next chunk of customer ids in id order (keyset: no OFFSET, resumable)."""
    # Absorbed customers (merged into another) hold nothing to evaluate.
    stmt = select(Customer.id).where(Customer.merged_into.is_(None)).order_by(Customer.id)
    stmt = stmt.limit(limit)
    if after is not None:
        stmt = stmt.where(Customer.id > after)
    return list(await session.scalars(stmt))


async def count_customers(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None))
        )
        or 0
    )
