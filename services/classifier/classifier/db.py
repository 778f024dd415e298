"""Engine and session factories, the request session dependency, and unit_of_work()."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

import asyncpg
import orjson
from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from classifier.config import ClassifierSettings


def make_engine(settings: ClassifierSettings, *, timeout: float | None = None) -> AsyncEngine:
    """The engine; every statement, connect and pool checkout is bounded by `timeout`."""
    timeout = timeout or settings.db_timeout_seconds
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args=connect_args(timeout),
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


def connect_args(timeout: float) -> dict[str, Any]:
    """asyncpg arguments: the client gives up after `timeout` (a server that holds the
    socket but never answers), the server cancels statements a little earlier."""
    return {
        "timeout": timeout,
        "command_timeout": timeout,
        "server_settings": {
            "statement_timeout": str(int(timeout * 1000 * 0.9)),
            "lock_timeout": str(int(timeout * 1000 * 0.9)),
        },
    }


# SQLSTATE classes: 08 connection, 28 authentication, 53 resources, 57 operator
# intervention (shutdown, statement timeout), 40 rollback (deadlock, serialization),
# 55P03 lock not available.
_UNAVAILABLE_CLASSES = ("08", "28", "53", "57", "40")
_UNAVAILABLE_STATES = frozenset({"55P03", "55006"})


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind an exception (SQLAlchemy-wrapped or asyncpg's own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def is_unavailable(exc: BaseException) -> bool:
    """A database that is down, slow, overloaded, or refused us for now: retry later.

    Deadlocks and serialization failures are here too: the same work succeeds
    when tried again.
    """
    if isinstance(
        exc,
        OperationalError
        | InterfaceError
        | SQLAlchemyTimeoutError
        | OSError
        | ConnectionError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        # A connection closed by the server mid-statement (a restart) can leave
        # asyncpg's protocol out of step: "cannot switch to state ...".
        | asyncpg.InternalClientError,
    ):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    return code is not None and (code[:2] in _UNAVAILABLE_CLASSES or code in _UNAVAILABLE_STATES)


def dsn(url: str) -> str:
    """A libpq/asyncpg DSN from the SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _json_dumps(value: object) -> str:
    # Facts documents and explanations are the bulk of every write: orjson is ~5x json.
    return orjson.dumps(value).decode()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commits when the block ends normally, rolls back otherwise."""
    async with sessions() as session, session.begin():
        yield session


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions = cast(async_sessionmaker[AsyncSession], request.app.state.sessions)
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def unnest(
    columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> tuple[str, dict[str, Any]]:
    """`unnest(<one array per column>) AS t(<names>)` and its parameters, so one
    statement takes any number of rows. A jsonb or json column travels as text:
    cast it where it is used (`select_list` does)."""
    arrays = ", ".join(
        f"CAST(:p{i} AS {'text' if kind in _JSON else kind}[])"
        for i, (_, kind) in enumerate(columns)
    )
    names = ", ".join(name for name, _ in columns)
    params = {f"p{i}": [row[i] for row in rows] for i in range(len(columns))}
    return f"unnest({arrays}) AS t({names})", params


def select_list(columns: Sequence[tuple[str, str]]) -> str:
    """The unnested columns in order, jsonb and json ones cast back from text."""
    return ", ".join(f"{name}::{kind}" if kind in _JSON else name for name, kind in columns)


_JSON = ("jsonb", "json")
