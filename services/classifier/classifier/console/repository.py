"""SQL for console sessions: create, find an active one (with its key's scope), revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.models import ApiKey, ConsoleSession


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id: str
    key_id: str
    scope: str
    csrf_hash: str
    expires_at: datetime


async def add(
    session: AsyncSession,
    *,
    session_id: str,
    token_hash: str,
    csrf_hash: str,
    key_id: str,
    expires_at: datetime,
) -> None:
    session.add(
        ConsoleSession(
            id=session_id,
            token_hash=token_hash,
            csrf_hash=csrf_hash,
            key_id=key_id,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def find_active(session: AsyncSession, token_hash: str) -> ActiveSession | None:
    """The session with this token hash if it is neither expired nor revoked and its key
    is not revoked either; None otherwise."""
    row = (
        await session.execute(
            select(
                ConsoleSession.id,
                ConsoleSession.key_id,
                ApiKey.scope,
                ConsoleSession.csrf_hash,
                ConsoleSession.expires_at,
            )
            .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
            .where(
                ConsoleSession.token_hash == token_hash,
                ConsoleSession.revoked_at.is_(None),
                ConsoleSession.expires_at > func.now(),
                ApiKey.revoked_at.is_(None),
            )
        )
    ).first()
    return None if row is None else ActiveSession(*row)


async def is_active(session: AsyncSession, session_id: str) -> bool:
    """Whether the session is still neither expired nor revoked, nor its key revoked."""
    found = await session.scalar(
        select(ConsoleSession.id)
        .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
        .where(
            ConsoleSession.id == session_id,
            ConsoleSession.revoked_at.is_(None),
            ConsoleSession.expires_at > func.now(),
            ApiKey.revoked_at.is_(None),
        )
    )
    return found is not None


async def revoke(session: AsyncSession, session_id: str) -> bool:
    result = await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(getattr(result, "rowcount", 0))


async def prune(session: AsyncSession, before: datetime) -> None:
    """Forget sessions that expired before `before` (they can no longer be used)."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < before))
