"""SQL for reading customers: each read is one indexed query."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.models import ClassHistory, Customer


async def exists(session: AsyncSession, customer_id: str) -> bool:
    return (await session.scalar(select(Customer.id).where(Customer.id == customer_id))) is not None


async def canonical(session: AsyncSession, customer_id: str) -> str:
    """The customer an id leads to: itself, or the survivor of the merge that absorbed it."""
    into = await session.scalar(select(Customer.merged_into).where(Customer.id == customer_id))
    return into or customer_id


async def history(
    session: AsyncSession, customer_id: str, dimension: str | None, limit: int
) -> list[ClassHistory]:
    stmt = select(ClassHistory).where(ClassHistory.customer_id == customer_id)
    if dimension:
        stmt = stmt.where(ClassHistory.dimension == dimension)
    stmt = stmt.order_by(ClassHistory.dimension, ClassHistory.valid_from, ClassHistory.id)
    return list(await session.scalars(stmt.limit(limit)))


async def current_periods(session: AsyncSession, customer_id: str) -> list[ClassHistory]:
    """The open period of each dimension: the classes the customer holds now."""
    stmt = select(ClassHistory).where(
        ClassHistory.customer_id == customer_id, ClassHistory.valid_to.is_(None)
    )
    return list(await session.scalars(stmt.order_by(ClassHistory.dimension)))


async def classes_as_of(
    session: AsyncSession, customer_id: str, at: datetime
) -> list[ClassHistory]:
    stmt = select(ClassHistory).where(
        ClassHistory.customer_id == customer_id,
        ClassHistory.valid_from <= at,
        (ClassHistory.valid_to.is_(None)) | (ClassHistory.valid_to > at),
    )
    return list(await session.scalars(stmt.order_by(ClassHistory.dimension)))
