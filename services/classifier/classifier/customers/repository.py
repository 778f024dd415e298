"""SQL for reading customers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.models import Customer


async def get(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.id == customer_id))
