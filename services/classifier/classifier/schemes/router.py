"""HTTP endpoints for scheme versions: list, read, draft, preview, activate, progress, cancel."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Body, Depends, Path, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.audit import actor_of
from classifier.auth import ADMIN_ONLY, AdminAccess, Principal, ReadAccess, require_admin
from classifier.clock import Clock
from classifier.db import SessionDep
from classifier.intake import read_text_body
from classifier.jobs import service as jobs
from classifier.jobs.schemas import JobOut, job_out
from classifier.schemes import api, repository
from classifier.schemes.service import compile_stored
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1", tags=["schemes"], dependencies=[ReadAccess])
Version = Annotated[int, Path(ge=1, le=2_147_483_647, description="A scheme version.")]
JobId = Annotated[int, Path(ge=1, le=2_147_483_647, description="A job (activation) id.")]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return cast(async_sessionmaker[AsyncSession], request.app.state.sessions)


@router.get("/schemes")
async def list_schemes(session: SessionDep) -> api.SchemeList:
    """Every version, newest first, with its status (draft, active, retired)."""
    rows = await repository.all_versions(session)
    return api.SchemeList(schemes=[api.summary(r) for r in rows])


@router.get("/schemes/{version}", responses={404: {"model": Problem}})
async def get_scheme(version: Version, session: SessionDep) -> api.SchemeOut:
    """One version: its source as uploaded and the validated scheme."""
    row = await api.get_row(session, version)
    spec = compile_stored(row).spec.model_dump(mode="json", by_alias=True)
    return api.SchemeOut(**api.summary(row).model_dump(), source=row.source, spec=spec)


@router.post(
    "/schemes",
    status_code=status.HTTP_201_CREATED,
    responses={
        **ADMIN_ONLY,
        415: {"model": Problem},
        422: {"model": Problem, "description": "Invalid scheme; each error names its path."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def upload_draft(
    request: Request, response: Response, session: SessionDep, principal: AdminPrincipal
) -> api.SchemeOut:
    """Upload a draft (YAML or JSON, format: schemas/json/scheme.schema.json); nothing changes
    until it is activated."""
    source = await read_text_body(request)
    draft = await api.create_draft(session, source, actor=actor_of(principal))
    response.headers["Location"] = f"/v1/schemes/{draft.version}"
    return draft


@router.post(
    "/schemes/{version}/preview",
    dependencies=[AdminAccess],
    responses={**ADMIN_ONLY, 404: {"model": Problem}},
)
async def preview_scheme(version: Version, request: Request) -> api.PreviewOut:
    """What activating `version` would change now: a from -> to count matrix per dimension
    with sample customer ids. Read-only: nothing is written."""
    return await api.preview(_sessions(request), version, cast(Clock, request.app.state.clock))


@router.post(
    "/schemes/{version}/activate",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **ADMIN_ONLY,
        404: {"model": Problem},
        409: {"model": Problem, "description": "One job (activation, recompute) at a time."},
    },
)
async def activate_scheme(
    version: Version,
    request: Request,
    response: Response,
    principal: AdminPrincipal,
    body: Annotated[api.ActivateIn | None, Body()] = None,
) -> JobOut:
    """Make `version` active now and queue the job that re-evaluates everyone (changes carry
    reason `scheme_change`, or none with `silent`); a worker runs it. Activating an older
    version rolls back. Progress: `Location` (`/v1/activations/{id}`, the same as
    `/v1/jobs/{id}`)."""
    job = await api.start_activation(
        _sessions(request),
        version,
        silent=body.silent if body else False,
        clock=cast(Clock, request.app.state.clock),
        created_by=principal.key_id,
        actor=actor_of(principal),
    )
    response.headers["Location"] = f"/v1/activations/{job.id}"
    return job_out(job)


@router.get("/activations/{activation_id:int}", responses={404: {"model": Problem}})
async def get_activation(activation_id: JobId, session: SessionDep) -> JobOut:
    """Progress of an activation: status, customers done of total, changes so far."""
    return job_out(await jobs.get(session, activation_id, kind="activate"))


@router.post(
    "/activations/{activation_id:int}:cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **ADMIN_ONLY,
        404: {"model": Problem},
        409: {"model": Problem, "description": "Already finished."},
    },
)
async def cancel_activation(
    activation_id: JobId, request: Request, principal: AdminPrincipal
) -> JobOut:
    """Stop an activation's re-evaluation at its next chunk (a queued one at once). The
    version stays active; customers not yet re-evaluated are when their next event
    arrives, or by a recompute job."""
    job = await jobs.cancel(
        _sessions(request), activation_id, kind="activate", actor=actor_of(principal)
    )
    return job_out(job)
