"""Attribute conflicts over HTTP (admin scope): CRM sources that disagree."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from classifier.attributes import repository
from classifier.auth import ADMIN_ONLY, AdminAccess
from classifier.db import SessionDep

router = APIRouter(
    prefix="/v1/attribute-conflicts", tags=["attributes"], dependencies=[AdminAccess]
)


class ConflictOut(BaseModel):
    customer_id: str
    conflicts: dict[str, dict[str, Any]] = Field(
        description="Per attribute, the value each source gave (e.g. industry: "
        "{crm/hubspot: retail, crm/fxiaoke: manufacturing}); the scheme's "
        "`attribute_sources` decides which one the classes use."
    )


class ConflictsOut(BaseModel):
    total: int = Field(description="Customers with at least one disagreement.")
    by_attribute: dict[str, int] = Field(
        description="Customers with a disagreement, per attribute."
    )
    customers: list[ConflictOut]
    next_cursor: str | None = Field(
        description="Pass as `after` for the next page; null at the end."
    )


@router.get("", responses=ADMIN_ONLY)
async def attribute_conflicts(
    session: SessionDep,
    attribute: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[str, Query(max_length=128)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ConflictsOut:
    """Customers whose CRM sources disagree on an attribute, counted and listed (as of each
    customer's stored facts document). A scan of the customers: for operators, not a hot path."""
    by_attribute = await repository.counts(session)
    rows = await repository.page(session, attribute=attribute, after=after, limit=limit)
    return ConflictsOut(
        total=await repository.total(session),
        by_attribute=by_attribute,
        customers=[ConflictOut(customer_id=cid, conflicts=c) for cid, c in rows],
        next_cursor=rows[-1][0] if len(rows) == limit else None,
    )
