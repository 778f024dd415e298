"""HTTP endpoints for customers: one, many, history, as-of, and manual overrides."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Path, Query, Request
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.auth import AdminAccess, ReadAccess
from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.customers import service
from classifier.customers.schemas import (
    ClassesAsOfOut,
    CustomerOut,
    HistoryOut,
    LookupIn,
    LookupOut,
    OverrideIn,
)
from classifier.db import SessionDep
from classifier.processing.batch import BatchProcessor
from classifier.schemes.service import SchemeCache
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1/customers", tags=["customers"], dependencies=[ReadAccess])
CustomerId = Annotated[str, Path(min_length=1, max_length=128, description="The customer id.")]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such customer."}
}


def _clock(request: Request) -> Clock:
    return cast(Clock, request.app.state.clock)


@router.post(
    ":lookup",
    responses={400: {"model": Problem, "description": "More than 1,000 ids."}},
)
async def lookup_customers(body: LookupIn, request: Request, session: SessionDep) -> LookupOut:
    """Up to 1,000 customers in one query; ids with no customer are listed in `unknown`."""
    settings = cast(ClassifierSettings, request.app.state.settings)
    return await service.lookup(session, body.ids, settings.max_lookup_ids, _clock(request)())


@router.get("/{customer_id}", responses=NOT_FOUND)
async def get_customer(
    customer_id: CustomerId, request: Request, session: SessionDep
) -> CustomerOut:
    """One customer's classes per dimension, with `since`, scheme version and why."""
    return await service.get_customer(session, customer_id, _clock(request)())


@router.get("/{customer_id}/history", responses=NOT_FOUND)
async def get_history(
    customer_id: CustomerId,
    session: SessionDep,
    dimension: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> HistoryOut:
    """Every period the customer held a class, per dimension, oldest first."""
    return await service.history(session, customer_id, dimension, limit)


@router.get("/{customer_id}/classes", responses=NOT_FOUND)
async def get_classes_as_of(
    customer_id: CustomerId,
    session: SessionDep,
    as_of: Annotated[AwareDatetime, Query(description="ISO 8601 instant with offset.")],
) -> ClassesAsOfOut:
    """The classes the customer held at a past instant (from the class history)."""
    return await service.classes_as_of(session, customer_id, as_of)


@router.put(
    "/{customer_id}/overrides/{dimension}",
    dependencies=[AdminAccess],
    responses={**NOT_FOUND, 400: {"model": Problem}},
)
async def put_override(
    customer_id: CustomerId,
    dimension: Annotated[str, Path(max_length=64)],
    body: OverrideIn,
    request: Request,
    session: SessionDep,
) -> CustomerOut:
    """Set a manual class with a reason and optional expiry; applies at once (reason `override`)."""
    return await _set_override(request, session, customer_id, dimension, body)


@router.delete(
    "/{customer_id}/overrides/{dimension}", dependencies=[AdminAccess], responses=NOT_FOUND
)
async def delete_override(
    customer_id: CustomerId,
    dimension: Annotated[str, Path(max_length=64)],
    request: Request,
    session: SessionDep,
) -> CustomerOut:
    """Remove a manual class; the customer is re-evaluated by the scheme at once."""
    return await _set_override(request, session, customer_id, dimension, None)


async def _set_override(
    request: Request,
    session: AsyncSession,
    customer_id: str,
    dimension: str,
    body: OverrideIn | None,
) -> CustomerOut:
    state = request.app.state
    return await service.set_override(
        session,
        cast(BatchProcessor, state.processor),
        cast(SchemeCache, state.schemes),
        _clock(request),
        customer_id,
        dimension,
        body,
    )
