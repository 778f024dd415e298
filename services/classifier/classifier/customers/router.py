"""HTTP endpoints for customers: one, many, history, as-of, and manual overrides."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from classifier import audit
from classifier.auth import ADMIN_ONLY, Principal, ReadAccess, require_admin
from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.customers import reads, service
from classifier.customers.schemas import (
    ClassesAsOfOut,
    CustomerOut,
    HistoryOut,
    LookupIn,
    LookupOut,
    OverrideIn,
)
from classifier.db import SessionDep
from classifier.params import Instant
from classifier.processing.batch import BatchProcessor
from classifier.schemes.service import SchemeCache
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1/customers", tags=["customers"], dependencies=[ReadAccess])
Admin = Annotated[Principal, Depends(require_admin)]
CustomerId = Annotated[str, Path(min_length=1, max_length=128, description="The customer id.")]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such customer."}
}


def _clock(request: Request) -> Clock:
    return cast(Clock, request.app.state.clock)


def _now(request: Request) -> int:
    return _clock(request)()


def _reader(request: Request) -> reads.Reader:
    return cast(reads.Reader, request.app.state.reader)


def _json(document: bytes) -> Response:
    # The documents are built to the response model's shape (see customers/reads.py).
    return Response(document, media_type="application/json")


@router.post(
    ":lookup",
    response_model=LookupOut,
    responses={400: {"model": Problem, "description": "More than 1,000 ids."}},
)
async def lookup_customers(body: LookupIn, request: Request) -> Response:
    """Up to 1,000 customers in one query; ids with no customer are listed in `unknown`."""
    settings = cast(ClassifierSettings, request.app.state.settings)
    found = await service.lookup(_reader(request), body.ids, settings.max_lookup_ids, _now(request))
    return _json(found)


@router.get("/{customer_id}", response_model=CustomerOut, responses=NOT_FOUND)
async def get_customer(customer_id: CustomerId, request: Request) -> Response:
    """One customer's classes per dimension, with `since`, scheme version and why."""
    return _json(await service.get_customer(_reader(request), customer_id, _now(request)))


@router.get("/{customer_id}/history", response_model=HistoryOut, responses=NOT_FOUND)
async def get_history(
    customer_id: CustomerId,
    request: Request,
    dimension: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Every period the customer held a class, per dimension, oldest first."""
    return _json(await service.history(_reader(request), customer_id, dimension, limit))


@router.get("/{customer_id}/classes", response_model=ClassesAsOfOut, responses=NOT_FOUND)
async def get_classes_as_of(
    customer_id: CustomerId,
    request: Request,
    as_of: Annotated[
        Instant | Literal["now"] | None,
        Query(
            description="ISO 8601 instant with offset, in event time (when things happened, "
            "as their sources stamped them); `now`, omitted, or an instant not before the "
            "server's clock: the current classes."
        ),
    ] = None,
) -> Response:
    """The classes the customer held at an instant, from the class history.

    The history is kept in event time: a period starts when the event that caused
    it happened (an order's `placed_at`, a call's `started_at`) or when a
    time-driven change fell due, not when the worker recorded it. Sources may
    stamp events up to 300 s ahead of the server's clock, so a period can start a
    little in the future; "as of now" (`now`, omitted, or an instant at or after
    the server's clock) therefore answers the current classes (the open periods),
    whatever their stamps.
    """
    at = None if as_of == "now" else as_of
    return _json(await service.classes_as_of(_reader(request), customer_id, at, now=_now(request)))


@router.put(
    "/{customer_id}/overrides/{dimension}",
    response_model=CustomerOut,
    responses={**ADMIN_ONLY, **NOT_FOUND, 400: {"model": Problem}},
)
async def put_override(
    customer_id: CustomerId,
    dimension: Annotated[str, Path(max_length=64)],
    body: OverrideIn,
    request: Request,
    session: SessionDep,
    admin: Admin,
) -> Response:
    """Set a manual class with a reason and optional expiry; applies at once (reason `override`)."""
    return await _set_override(request, session, admin, customer_id, dimension, body)


@router.delete(
    "/{customer_id}/overrides/{dimension}",
    response_model=CustomerOut,
    responses={**ADMIN_ONLY, **NOT_FOUND},
)
async def delete_override(
    customer_id: CustomerId,
    dimension: Annotated[str, Path(max_length=64)],
    request: Request,
    session: SessionDep,
    admin: Admin,
) -> Response:
    """Remove a manual class; the customer is re-evaluated by the scheme at once."""
    return await _set_override(request, session, admin, customer_id, dimension, None)


async def _set_override(
    request: Request,
    session: AsyncSession,
    admin: Principal,
    customer_id: str,
    dimension: str,
    body: OverrideIn | None,
) -> Response:
    state = request.app.state
    settings = cast(ClassifierSettings, state.settings)
    document = await service.set_override(
        session,
        _reader(request),
        cast(BatchProcessor, state.processor),
        cast(SchemeCache, state.schemes),
        _clock(request),
        customer_id,
        dimension,
        body,
        actor=audit.actor_of(admin),
        target=audit.customer_ref(settings, customer_id),
    )
    return _json(document)
