"""Read models of customers for the API, and manual overrides."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from classifier import audit
from classifier.clock import Clock
from classifier.customers import reads, repository
from classifier.customers.schemas import (
    OverrideIn,
)
from classifier.engine import from_micros, to_micros
from classifier.errors import BadRequest, CustomerNotFound, NotFound
from classifier.processing.batch import BatchProcessor
from classifier.processing.state import CustomerState
from classifier.schemes.service import SchemeCache
from eventschemas.changes import ChangeReason


async def get_customer(reader: reads.Reader, customer_id: str, now: int) -> bytes:
    """`CustomerOut` as JSON bytes."""
    row = await reader.one(customer_id)
    if row is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return reads.customer_document(row, now, customer_id)


async def lookup(reader: reads.Reader, ids: Sequence[str], limit: int, now: int) -> bytes:
    """`LookupOut` as JSON bytes: the customers in the order asked (first mention), and
    the unknown ids."""
    if len(ids) > limit:
        raise BadRequest(f"at most {limit} ids per lookup, got {len(ids)}")
    rows = await reader.many(ids)
    seen: set[str] = set()
    found: list[list[bytes | memoryview]] = []
    unknown: list[str] = []
    for cid in ids:
        if cid in seen:
            continue
        seen.add(cid)
        row = rows.get(cid)
        if row is None:
            unknown.append(cid)
        else:
            found.append(reads.customer_parts(row, now, cid))
    return reads.lookup_body(found, unknown)


async def history(
    reader: reads.Reader, customer_id: str, dimension: str | None, limit: int
) -> bytes:
    """`HistoryOut` as JSON bytes."""
    document = await reads.history(reader.pool, customer_id, dimension, limit)
    if document is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return document


async def classes_as_of(
    reader: reads.Reader, customer_id: str, at: datetime | None, *, now: int
) -> bytes:
    """`ClassesAsOfOut` as JSON bytes: the classes held at `at` in event time; at or
    after `now` (or None), the current ones: events stamped up to 300 s ahead must not
    hide them."""
    current = from_micros(now)
    if at is None or at >= current:
        document = await reads.classes_as_of(reader.pool, customer_id, None, at or current)
    else:
        document = await reads.classes_as_of(reader.pool, customer_id, at, at)
    if document is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return document


async def set_override(
    session: AsyncSession,
    reader: reads.Reader,
    processor: BatchProcessor,
    schemes: SchemeCache,
    clock: Clock,
    customer_id: str,
    dimension: str,
    override: OverrideIn | None,
    *,
    actor: str,
    target: str | None,
) -> bytes:
    """Set (or with None, remove) a manual class, and re-evaluate the customer at once.

    The audit entry (`customer.override.set` or `.remove`) commits with the change; it
    names the customer by `target` (its audit digest) and holds the dimension, the
    class and the expiry, never the reason (free text that may name a person).
    """
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
    # An id a merge absorbed: the override is the survivor's.
    customer_id = await repository.canonical(session, customer_id)
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

    if override is None:
        entry = audit.Entry(actor, "customer.override.remove", target, {"dimension": dimension})
    else:
        expires = override.expires_at.isoformat() if override.expires_at else None
        details = {"dimension": dimension, "class": override.cls, "expires_at": expires}
        entry = audit.Entry(actor, "customer.override.set", target, details)
    await processor.reevaluate(
        [customer_id], now, ChangeReason.OVERRIDE, prepare=prepare, entry=entry
    )
    if not found or not found[0]:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return await get_customer(reader, customer_id, now)
