"""SQL for customers that the write paths read through the ORM session (the read
paths' SQL is in customers/reads.py, on the read pool)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.models import Customer


async def canonical(session: AsyncSession, customer_id: str) -> str:
    """The customer an id leads to: itself, or the survivor of the merge that absorbed it."""
    into = await session.scalar(select(Customer.merged_into).where(Customer.id == customer_id))
    return into or customer_id
