"""SQL for the class views: members of a class, counts per class, flows between classes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from classifier.models import ClassChange, CustomerClass


async def members(
    session: AsyncSession,
    dimension: str,
    cls: str,
    filters: Mapping[str, str],
    after: str | None,
    limit: int,
) -> list[Any]:
    """(customer_id, since) rows of customers holding `cls` in `dimension` and every
    filter's class, in id order after `after`."""
    stmt = select(CustomerClass.customer_id, CustomerClass.since).where(
        CustomerClass.dimension == dimension, CustomerClass.cls == cls
    )
    if after:
        stmt = stmt.where(CustomerClass.customer_id > after)
    for dim, value in filters.items():
        other = aliased(CustomerClass)
        stmt = stmt.where(
            exists().where(
                and_(
                    other.customer_id == CustomerClass.customer_id,
                    other.dimension == dim,
                    other.cls == value,
                )
            )
        )
    return list(
        (await session.execute(stmt.order_by(CustomerClass.customer_id).limit(limit))).all()
    )


async def counts(session: AsyncSession, dimension: str | None) -> list[tuple[str, str, int]]:
    """(dimension, class, customers) for every class held, or one dimension's."""
    stmt = select(CustomerClass.dimension, CustomerClass.cls, func.count()).group_by(
        CustomerClass.dimension, CustomerClass.cls
    )
    if dimension:
        stmt = stmt.where(CustomerClass.dimension == dimension)
    rows = (await session.execute(stmt.order_by(CustomerClass.dimension))).all()
    return [(d, c, n) for d, c, n in rows]


async def flows(
    session: AsyncSession, dimension: str, since: datetime, until: datetime
) -> list[tuple[str | None, str, int]]:
    """(from, to, count) of the changes announced in [since, until), most frequent first."""
    stmt = (
        select(ClassChange.old_class, ClassChange.new_class, func.count())
        .where(
            ClassChange.dimension == dimension,
            ClassChange.occurred_at >= since,
            ClassChange.occurred_at < until,
        )
        .group_by(ClassChange.old_class, ClassChange.new_class)
        .order_by(func.count().desc())
    )
    return [(o, n, c) for o, n, c in (await session.execute(stmt)).all()]


async def daily_counts(
    session: AsyncSession, dimension: str, days: list[datetime]
) -> list[tuple[datetime, str, int]]:
    """(instant, class, customers) holding each class at each of `days` (from the history:
    the periods that began at or before the instant and had not ended by it)."""
    stmt = text(
        "SELECT d.at, h.class, count(*) FROM unnest(CAST(:days AS timestamptz[])) AS d(at) "
        "JOIN class_history h ON h.dimension = :dimension AND h.valid_from <= d.at "
        "AND (h.valid_to IS NULL OR h.valid_to > d.at) GROUP BY d.at, h.class ORDER BY d.at"
    )
    rows = await session.execute(stmt, {"days": days, "dimension": dimension})
    return [(at, cls, n) for at, cls, n in rows.all()]
