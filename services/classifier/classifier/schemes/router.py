"""HTTP endpoints for scheme versions: list, read, draft, preview, activate, progress."""

from __future__ import annotations

import asyncio
from typing import Annotated, cast

from fastapi import APIRouter, Body, Path, Request, Response, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.auth import ADMIN_ONLY, AdminAccess, ReadAccess
from classifier.clock import Clock
from classifier.db import SessionDep
from classifier.errors import NotFound
from classifier.intake import read_text_body
from classifier.models import SchemeActivation, SchemeVersion
from classifier.schemes import api
from classifier.schemes.service import compile_stored
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1", tags=["schemes"], dependencies=[ReadAccess])
Version = Annotated[int, Path(ge=1, le=2_147_483_647, description="A scheme version.")]


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return cast(async_sessionmaker[AsyncSession], request.app.state.sessions)


@router.get("/schemes")
async def list_schemes(session: SessionDep) -> api.SchemeList:
    """Every version, newest first, with its status (draft, active, retired)."""
    rows = await session.scalars(select(SchemeVersion).order_by(SchemeVersion.version.desc()))
    return api.SchemeList(schemes=[api.summary(r) for r in rows])


@router.get("/schemes/{version}", responses={404: {"model": Problem}})
async def get_scheme(version: Version, session: SessionDep) -> api.SchemeOut:
    """One version: its source as uploaded and the validated scheme."""
    row = await api.get_row(session, version)
    spec = compile_stored(row).spec.model_dump(mode="json")
    return api.SchemeOut(**api.summary(row).model_dump(), source=row.source, spec=spec)


@router.post(
    "/schemes",
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminAccess],
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
async def upload_draft(request: Request, response: Response, session: SessionDep) -> api.SchemeOut:
    """Upload a draft (YAML or JSON, format: schemas/json/scheme.schema.json); nothing changes
    until it is activated."""
    source = await read_text_body(request)
    draft = await api.create_draft(session, source)
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
    dependencies=[AdminAccess],
    responses={
        **ADMIN_ONLY,
        404: {"model": Problem},
        409: {"model": Problem, "description": "One at a time."},
    },
)
async def activate_scheme(
    version: Version,
    request: Request,
    response: Response,
    body: Annotated[api.ActivateIn | None, Body()] = None,
) -> api.ActivationOut:
    """Make `version` active and re-evaluate everyone in the background (changes carry
    reason `scheme_change`, or none with `silent`). Activating an older version rolls back."""
    silent = body.silent if body else False
    sessions = _sessions(request)
    activation = await api.start_activation(sessions, version, silent)
    task = asyncio.create_task(
        api.run_activation(sessions, activation.id, silent, cast(Clock, request.app.state.clock))
    )
    tasks = cast(set[asyncio.Task[None]], request.app.state.background)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    response.headers["Location"] = f"/v1/activations/{activation.id}"
    return api.activation_out(activation)


@router.get("/activations/{activation_id}", responses={404: {"model": Problem}})
async def get_activation(
    activation_id: Annotated[int, Path(ge=1, le=2_147_483_647)], session: SessionDep
) -> api.ActivationOut:
    """Progress of an activation: customers done of total, changes so far, status."""
    row = await session.get(SchemeActivation, activation_id)
    if row is None:
        raise NotFound(f"no activation {activation_id}")
    return api.activation_out(row)
