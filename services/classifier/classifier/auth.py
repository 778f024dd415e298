"""API keys: scopes `read` or `admin` here (`*:write` for ingest), stored as SHA-256 hashes.

A key is `ck_<id>_<secret>`; only its hash is stored, so the database never
holds a usable key. Clients send `Authorization: Bearer <key>` or `X-API-Key`.
A verified key is trusted for `api_key_cache_seconds` (eventschemas.keycache;
revocation takes at most that long to bite, 4 s by default) so a request does
not pay a query for its key.

A browser signed in to the console (classifier.console) sends no key but a
session cookie: it stands for the key it was made with (that key's scope), is
looked up on every request (sign-out and key revocation bite at once), and a
state-changing request with it must repeat the session's CSRF token in
`X-CSRF-Token` (double submit: the token is also in a cookie page scripts of
this origin can read, and its hash is stored with the session).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier import audit
from classifier.config import ClassifierSettings
from classifier.console import repository as console_sessions
from classifier.db import unit_of_work
from classifier.errors import Forbidden, Unauthenticated
from classifier.models import ApiKey
from eventschemas.keycache import KeyCache

# The classifier API's scopes, and ingest's intake scopes: one key store for both.
API_SCOPES = ("read", "admin")
INTAKE_SCOPES = ("orders:write", "calls:write", "imports:write")
SCOPES = API_SCOPES + INTAKE_SCOPES
_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
SESSION_COOKIE = "classifier_session"
CSRF_COOKIE = "classifier_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(scope: str | Iterable[str]) -> list[str]:
    """Scopes given space- or comma-separated (or as a list), checked and de-duplicated."""
    parts = scope.replace(",", " ").split() if isinstance(scope, str) else list(scope)
    unknown = [p for p in parts if p not in SCOPES]
    if unknown or not parts:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}")
    return list(dict.fromkeys(parts))


@dataclass(frozen=True)
class Principal:
    key_id: str
    scope: str  # space-separated
    session_id: str | None = None  # set when the caller is a signed-in console session

    def has(self, scope: str) -> bool:
        return scope in self.scope.split()


async def create_key(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    scope: str | Iterable[str],
    *,
    rate_per_second: float | None = None,
    burst: int | None = None,
    actor: str = audit.CLI,
) -> tuple[str, str]:
    """Store a new key's hash; return (id, key). The key is shown once, never stored.

    `rate_per_second` and `burst` are the key's intake quota (None: ingest's
    defaults; a rate of 0: no limit). The audit trail names `actor` (the command
    line unless told otherwise) and the key's id, name and scope, never the key.
    """
    scopes = " ".join(parse_scopes(scope))
    if (rate_per_second is not None and rate_per_second < 0) or (burst is not None and burst < 1):
        raise ValueError("the rate is >= 0 (0: no limit) and the burst >= 1")
    key_id = secrets.token_hex(6)
    key = f"ck_{key_id}_{secrets.token_urlsafe(24)}"
    async with unit_of_work(sessions) as session:
        session.add(
            ApiKey(
                id=key_id,
                name=name,
                key_hash=hash_key(key),
                scope=scopes,
                rate_per_second=rate_per_second,
                burst=burst,
            )
        )
        details: dict[str, Any] = {"key_id": key_id, "name": name, "scope": scopes}
        details |= {"rate_per_second": rate_per_second, "burst": burst}
        await audit.record(session, actor, "api_key.create", f"api-key:{key_id}", details)
    return key_id, key


async def set_quota(
    sessions: async_sessionmaker[AsyncSession],
    key_id: str,
    *,
    rate_per_second: float | None,
    burst: int | None,
    actor: str = audit.CLI,
) -> bool:
    """Set an active key's intake quota (None: ingest's defaults); ingest applies it
    once its cached copy of the key expires. Audited when a key was changed."""
    async with unit_of_work(sessions) as session:
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(rate_per_second=rate_per_second, burst=burst)
        )
        changed = bool(getattr(result, "rowcount", 0))
        if changed:
            details = {"key_id": key_id, "rate_per_second": rate_per_second, "burst": burst}
            await audit.record(session, actor, "api_key.set_quota", f"api-key:{key_id}", details)
    return changed


async def revoke_key(
    sessions: async_sessionmaker[AsyncSession], key_id: str, *, actor: str = audit.CLI
) -> bool:
    """Revoke an active key; False when there is none with this id. Audited when revoked."""
    async with unit_of_work(sessions) as session:
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())  # the database's clock, like created_at
        )
        revoked = bool(getattr(result, "rowcount", 0))
        if revoked:
            details = {"key_id": key_id}
            await audit.record(session, actor, "api_key.revoke", f"api-key:{key_id}", details)
    return revoked


class KeyVerifier:
    """Looks keys up by hash, with a short-lived cache of verified (and unknown) ones."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self._sessions = sessions
        self._cache: KeyCache[Principal] = KeyCache(ttl)

    async def verify(self, key: str) -> Principal | None:
        """The key's principal, or None when it is unknown or revoked."""
        return await self._cache.get(hash_key(key), self._load)

    async def _load(self, digest: str) -> Principal | None:
        async with self._sessions() as session:
            row = await session.execute(
                select(ApiKey.id, ApiKey.scope).where(
                    ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
                )
            )
        found = row.first()
        return None if found is None else Principal(found.id, found.scope)


async def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    settings = cast(ClassifierSettings, request.app.state.settings)
    if not settings.auth_enabled:
        return Principal("anonymous", "admin")
    key = header or (bearer.credentials if bearer else None)
    if not key:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            return await session_principal(request, token)
        raise Unauthenticated("send an API key: Authorization: Bearer <key> or X-API-Key")
    verifier = cast(KeyVerifier, request.app.state.key_verifier)
    principal = await verifier.verify(key)
    if principal is None:
        raise Unauthenticated("unknown or revoked API key")
    return principal


async def session_principal(request: Request, token: str) -> Principal:
    """The principal of a console session cookie; a state-changing request must also
    carry the session's CSRF token in X-CSRF-Token (else 403)."""
    sessions = cast(async_sessionmaker[AsyncSession], request.app.state.sessions)
    async with sessions() as session:
        found = await console_sessions.find_active(session, hash_key(token))
    if found is None:
        raise Unauthenticated("the console session expired or was ended: sign in again")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(hash_key(sent), found.csrf_hash):
            raise Forbidden(f"send the session's CSRF token in {CSRF_HEADER}")
    return Principal(found.key_id, found.scope, session_id=found.id)


async def require_read(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    # read and admin keys may read; an intake-only key (orders:write, ...) may not.
    if not (principal.has("read") or principal.has("admin")):
        raise Forbidden("this operation needs an API key with the read or admin scope")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.has("admin"):
        raise Forbidden("this operation needs an API key with the admin scope")
    return principal


ReadAccess = Depends(require_read)
# For the OpenAPI schema of admin operations (the 401 is documented for all; see
# eventschemas.http.document_problems).
ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    403: {"description": "The API key lacks the admin scope."}
}
AdminAccess = Depends(require_admin)
