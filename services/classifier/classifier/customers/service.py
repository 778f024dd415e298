"""Read models of customers for the API, and manual overrides."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from classifier.clock import Clock
from classifier.customers import repository
from classifier.customers.schemas import (
    AggregatesOut,
    ClassAsOf,
    ClassesAsOfOut,
    CustomerClassOut,
    CustomerOut,
    HistoryOut,
    HistoryPeriod,
    LookupOut,
    OverrideIn,
    OverrideOut,
)
from classifier.engine import from_micros, to_micros
from classifier.errors import BadRequest, CustomerNotFound, NotFound
from classifier.models import Customer
from classifier.processing.batch import BatchProcessor
from classifier.processing.state import CustomerState
from classifier.schemes.service import SchemeCache
from eventschemas.changes import ChangeReason


def to_out(row: Customer, now: int | None = None) -> CustomerOut:
    classes = {
        dim: CustomerClassOut(
            dimension=dim,
            cls=c["class"],
            since=from_micros(c["since"]),
            scheme_version=c["scheme_version"],
            rule=c["rule"],
            explanation=c["explanation"],
        )
        for dim, c in row.classes.items()
    }
    overrides = {
        dim: OverrideOut(
            cls=o["class"],
            reason=o["reason"],
            expires_at=from_micros(o["expires_at"]) if o.get("expires_at") else None,
            set_at=from_micros(o["set_at"]),
            active=o.get("expires_at") is None or now is None or o["expires_at"] > now,
        )
        for dim, o in (row.overrides or {}).items()
    }
    return CustomerOut(
        id=row.id,
        classes=classes,
        aggregates=AggregatesOut.model_validate(row, from_attributes=True),
        features=row.features,
        scheme_version=row.scheme_version,
        overrides=overrides,
        evaluated_at=row.evaluated_at,
        next_review_at=row.next_review_at,
        updated_at=row.updated_at,
    )


async def get_customer(session: AsyncSession, customer_id: str, now: int) -> CustomerOut:
    row = await repository.get(session, customer_id)
    if row is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return to_out(row, now)


async def lookup(session: AsyncSession, ids: Sequence[str], limit: int, now: int) -> LookupOut:
    if len(ids) > limit:
        raise BadRequest(f"at most {limit} ids per lookup, got {len(ids)}")
    rows = {row.id: row for row in await repository.get_many(session, ids)}
    seen: set[str] = set()
    found, unknown = [], []
    for cid in ids:
        if cid in seen:
            continue
        seen.add(cid)
        row = rows.get(cid)
        if row is None:
            unknown.append(cid)
        else:
            found.append(to_out(row, now))
    return LookupOut(customers=found, unknown=unknown)


async def history(
    session: AsyncSession, customer_id: str, dimension: str | None, limit: int
) -> HistoryOut:
    if not await repository.exists(session, customer_id):
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    rows = await repository.history(session, customer_id, dimension, limit)
    return HistoryOut(
        customer_id=customer_id,
        periods=[
            HistoryPeriod(
                dimension=r.dimension,
                cls=r.cls,
                valid_from=r.valid_from,
                valid_to=r.valid_to,
                reason=r.reason,
                change_id=r.change_id,
                scheme_version=r.scheme_version,
            )
            for r in rows
        ],
    )


async def classes_as_of(session: AsyncSession, customer_id: str, at: datetime) -> ClassesAsOfOut:
    if not await repository.exists(session, customer_id):
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    rows = await repository.classes_as_of(session, customer_id, at)
    return ClassesAsOfOut(
        customer_id=customer_id,
        as_of=at,
        classes={
            r.dimension: ClassAsOf(
                cls=r.cls, since=r.valid_from, reason=r.reason, scheme_version=r.scheme_version
            )
            for r in rows
        },
    )


async def set_override(
    session: AsyncSession,
    processor: BatchProcessor,
    schemes: SchemeCache,
    clock: Clock,
    customer_id: str,
    dimension: str,
    override: OverrideIn | None,
) -> CustomerOut:
    """Set (or with None, remove) a manual class, and re-evaluate the customer at once."""
    now = clock()
    if override is not None:
        scheme = await schemes.active(session)
        dim = scheme.dimensions.get(dimension)
        if dim is None:
            raise NotFound(f"the active scheme has no dimension {dimension!r}")
        if override.cls not in dim.classes:
            raise BadRequest(
                f"{override.cls!r} is not a class of {dimension}: {', '.join(dim.classes)}"
            )
        if override.expires_at is not None and to_micros(override.expires_at) <= now:
            raise BadRequest("expires_at lies in the past")
    await session.rollback()  # release the read snapshot before the write transaction
    found: list[bool] = []

    def prepare(states: dict[str, CustomerState]) -> None:
        state = states.get(customer_id)
        found.append(state is not None)
        if state is None:
            return
        if override is None:
            if dimension not in state.overrides:
                raise NotFound(f"customer {customer_id!r} has no override on {dimension!r}")
            del state.overrides[dimension]
        else:
            record: dict[str, Any] = {
                "class": override.cls,
                "reason": override.reason,
                "expires_at": to_micros(override.expires_at) if override.expires_at else None,
                "set_at": now,
            }
            state.overrides[dimension] = record
        state.dirty = True

    await processor.reevaluate([customer_id], now, ChangeReason.OVERRIDE, prepare=prepare)
    if not found or not found[0]:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return await get_customer(session, customer_id, now)
