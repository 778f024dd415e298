"""Intake keys: `Authorization: Bearer <key>` with a `*:write` scope, checked per request.

The keys are the classifier's (one key store, table `api_keys`, SHA-256
hashes; `classifier api-keys create --scope orders:write`). Ingest reads them
with an asyncpg pool and trusts a verified key for `api_key_cache_seconds`
(eventschemas.keycache), so a request costs no query for its key; revocation
bites within that time (4 s by default). When the
database cannot answer within `database_timeout_seconds` the request is a 503
with Retry-After: nothing is accepted from a caller that was not verified.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import asyncpg

from eventschemas.keycache import KeyCache
from ingest.errors import IngestError

INTAKE_SCOPES = ("orders:write", "calls:write", "imports:write")
_NEGATIVE_TTL = 1.0  # an unknown key is asked for again after this long


class Unauthenticated(IngestError):
    status = 401
    slug = "unauthenticated"
    title = "A valid API key is required"


class Forbidden(IngestError):
    status = 403
    slug = "forbidden"
    title = "This API key's scopes do not allow this"


class DatabaseUnavailable(IngestError):
    status = 503
    slug = "database-unavailable"
    title = "The key store is unavailable; nothing was accepted, retry later"


# What a failed or hung database call raises: refused, reset, timed out, gone. A
# connection the server closes in the middle of a statement (a PostgreSQL restart)
# can also leave asyncpg's protocol out of step for the next statement on it:
# InternalClientError "cannot switch to state ...", seen under load; the pool drops
# that connection and the next call succeeds.
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@dataclass(frozen=True)
class IntakeKey:
    key_id: str
    scopes: frozenset[str]
    rate_per_second: float | None  # None: the service's default; 0: no limit
    burst: int | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def asyncpg_dsn(database_url: str) -> str:
    """A SQLAlchemy URL (postgresql+asyncpg://) as the plain DSN asyncpg takes."""
    scheme, sep, rest = database_url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


async def open_pool(database_url: str, *, size: int, call_timeout: float) -> asyncpg.Pool:
    """A lazy pool: no connection is made until the first lookup (ingest starts
    even while the database is down, and answers 503 until it is back)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=0,
        max_size=size,
        timeout=call_timeout,
        command_timeout=call_timeout,
        max_inactive_connection_lifetime=60,
        reset=_keep_session,
    )
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset on release: ingest sets no session state (its one
    session lock, the prune lock, is released before the connection is), so
    the round trip asyncpg's default reset query costs on every release is saved."""


class KeyStore:
    """Looks intake keys up by hash, with a short-lived cache (hits and misses)."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float, timeout: float, retry_after: int):
        self._pool = pool
        self._timeout = timeout
        self._retry_after = retry_after
        self._cache: KeyCache[IntakeKey] = KeyCache(ttl, miss_ttl=_NEGATIVE_TTL)

    async def verify(self, key: str) -> IntakeKey | None:
        """The key's scopes and quota, or None when it is unknown or revoked."""
        return await self._cache.get(hash_key(key), self._load)

    async def _load(self, digest: str) -> IntakeKey | None:
        try:
            async with asyncio.timeout(self._timeout):
                row = await self._pool.fetchrow(
                    "SELECT id, scope, rate_per_second, burst FROM api_keys "
                    "WHERE key_hash = $1 AND revoked_at IS NULL",
                    digest,
                )
        except DATABASE_ERRORS as exc:
            raise DatabaseUnavailable(
                "the API key could not be checked",
                headers={"Retry-After": str(self._retry_after)},
            ) from exc
        if row is None:
            return None
        return IntakeKey(
            key_id=row["id"],
            scopes=frozenset(row["scope"].split()),
            rate_per_second=row["rate_per_second"],
            burst=row["burst"],
        )
