"""The audit trail over HTTP: admin actions oldest first, after a cursor (admin scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from classifier import audit
from classifier.auth import ADMIN_ONLY, AdminAccess
from classifier.db import SessionDep
from classifier.models import AuditEntry

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[AdminAccess])
MAX_ID = 2**63 - 1  # entry ids are bigint


class AuditEntryOut(BaseModel):
    id: int = Field(description="Position in the trail; resume after it.")
    at: datetime = Field(description="When the action committed (the database's clock).")
    actor: str = Field(
        description="`api-key:<key id>` for an API call, `cli` for the command line, "
        "`anonymous` when the API runs without authentication."
    )
    action: str = Field(
        description="What was done, e.g. `scheme.activate`, `scheme.rollback`, "
        "`customer.override.set`, `customer.merge`, `api_key.revoke`."
    )
    target: str | None = Field(
        description="What it was done to: `scheme:<version>`, `job:<id>`, `api-key:<id>`, "
        "or a customer's keyed digest (never its id); null when unnamed."
    )
    details: dict[str, Any] = Field(
        description="Versions, dimension and class names, counts, job and key ids; "
        "never personal data."
    )


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: int = Field(description="Pass as `after` to continue (also when empty).")


def _out(row: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=row.details,
    )


@router.get("", responses=ADMIN_ONLY)
async def audit_trail(
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Last id seen; 0 from the start.")
    ] = 0,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z_.]+$",
            description="Only actions starting with this, e.g. `scheme.` or `api_key.`.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Admin actions, oldest first (append-only: an entry never changes or goes away)."""
    rows = await audit.page(session, after=after, action=action, limit=limit)
    return AuditPage(entries=[_out(r) for r in rows], next_cursor=rows[-1].id if rows else after)
