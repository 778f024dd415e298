"""SQL for scheme versions."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.models import SchemeVersion


async def all_versions(session: AsyncSession) -> list[SchemeVersion]:
    """Every version, newest first."""
    return list(await session.scalars(select(SchemeVersion).order_by(SchemeVersion.version.desc())))


async def get_active(session: AsyncSession) -> SchemeVersion | None:
    return await session.scalar(select(SchemeVersion).where(SchemeVersion.status == "active"))


async def get_active_version(session: AsyncSession) -> int | None:
    return await session.scalar(
        select(SchemeVersion.version).where(SchemeVersion.status == "active")
    )


async def latest_version(session: AsyncSession) -> int:
    return (await session.scalar(select(func.max(SchemeVersion.version)))) or 0


async def add_active(session: AsyncSession, version: int, name: str, source: str) -> SchemeVersion:
    # Seeding happens before any clock matters: the database's time, not the process's.
    row = SchemeVersion(
        version=version, name=name, source=source, status="active", activated_at=func.now()
    )
    session.add(row)
    await session.flush()
    return row


async def retire_active(session: AsyncSession) -> None:
    await session.execute(
        update(SchemeVersion).where(SchemeVersion.status == "active").values(status="retired")
    )
