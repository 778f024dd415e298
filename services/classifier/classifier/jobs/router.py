"""HTTP endpoints for jobs: list, read (progress), queue a recompute, cancel."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.audit import actor_of
from classifier.auth import ADMIN_ONLY, Principal, ReadAccess, require_admin
from classifier.db import SessionDep
from classifier.jobs import repository, service
from classifier.jobs.schemas import JobKind, JobList, JobOut, JobStatus, RecomputeIn, job_out
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[ReadAccess])
JobId = Annotated[int, Path(ge=1, le=2_147_483_647, description="A job id.")]


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return cast(async_sessionmaker[AsyncSession], request.app.state.sessions)


@router.get("/jobs")
async def list_jobs(
    session: SessionDep,
    kind: Annotated[JobKind | None, Query()] = None,
    job_status: Annotated[JobStatus | None, Query(alias="status")] = None,
    before: Annotated[int | None, Query(ge=1, le=2_147_483_647, description="Ids below.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    """Jobs newest first (activations and recomputes), with their progress."""
    rows = await repository.listing(
        session, kind=kind, status=job_status, before=before, limit=limit
    )
    return JobList(jobs=[job_out(r) for r in rows])


@router.get("/jobs/{job_id:int}", responses={404: {"model": Problem}})
async def get_job(job_id: JobId, session: SessionDep) -> JobOut:
    """A job's progress: status, customers done of total, changes so far, its worker."""
    return job_out(await service.get(session, job_id))


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **ADMIN_ONLY,
        409: {"model": Problem, "description": "One job (activation, recompute) at a time."},
    },
)
async def queue_recompute(
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(require_admin)],
    body: Annotated[RecomputeIn | None, Body()] = None,
) -> JobOut:
    """Queue a recompute: everyone re-evaluated under the active version at one instant
    (reason `scheme_change`, none announced with `silent`); a worker runs it."""
    job = await service.queue_recompute(
        _sessions(request),
        silent=body.silent if body else False,
        created_by=principal.key_id,
        actor=actor_of(principal),
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_out(job)


@router.post(
    "/jobs/{job_id:int}:cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **ADMIN_ONLY,
        404: {"model": Problem},
        409: {"model": Problem, "description": "Already finished."},
    },
)
async def cancel_job(
    job_id: JobId, request: Request, principal: Annotated[Principal, Depends(require_admin)]
) -> JobOut:
    """Cancel a job: a queued one at once, a running one at its next chunk boundary
    (`status` turns `cancelled` then; `cancel_requested_at` is set now)."""
    return job_out(await service.cancel(_sessions(request), job_id, actor=actor_of(principal)))
