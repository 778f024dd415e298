"""Console sign-in: an API key becomes a session cookie (HttpOnly, SameSite=Strict,
Secure over https) plus a CSRF cookie; sign-out revokes the session server-side.
The pages themselves are static files mounted at /console (see `mount`)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, cast
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request, Response, status
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from classifier import audit
from classifier.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    KeyVerifier,
    Principal,
    current_principal,
    hash_key,
)
from classifier.config import ClassifierSettings
from classifier.console import repository
from classifier.db import unit_of_work
from classifier.errors import Forbidden, Unauthenticated
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1/console", tags=["console"])
STATIC = Path(__file__).parent / "static"
# The pages load only their own scripts and styles and talk only to this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=200, description="An API key (read or admin).")


class SessionOut(BaseModel):
    key_id: str
    scopes: list[str]
    via: str = Field(description="`session` (the console's cookie) or `key` (a header).")
    expires_at: datetime | None = None


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _same_origin(request: Request) -> bool:
    """No Origin (not a browser's cross-site request), or the host this API is reached
    at: its Host, or the proxy's X-Forwarded-Host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return urlsplit(origin).netloc in hosts


@router.post(
    "/session",
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {"model": Problem, "description": "The body is not JSON."},
        401: {"model": Problem, "description": "Unknown or revoked key."},
        403: {"model": Problem, "description": "Not a read or admin key, or another origin."},
    },
)
async def sign_in(body: SignIn, request: Request, response: Response) -> SessionOut:
    """Sign in with an API key (read or admin scope): sets the session cookie and the CSRF
    cookie whose value state-changing requests repeat in `X-CSRF-Token`."""
    if not _same_origin(request):
        raise Forbidden("sign in from the console's own origin")
    verifier = cast(KeyVerifier, request.app.state.key_verifier)
    principal = await verifier.verify(body.key)
    if principal is None:
        raise Unauthenticated("unknown or revoked API key")
    if not (principal.has("read") or principal.has("admin")):
        raise Forbidden("the console needs an API key with the read or admin scope")
    settings = cast(ClassifierSettings, request.app.state.settings)
    sessions = cast(async_sessionmaker[AsyncSession], request.app.state.sessions)
    token, csrf, session_id = (
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(24),
        secrets.token_hex(8),
    )
    now = datetime.now(UTC)
    lifetime = timedelta(hours=settings.console_session_hours)
    async with unit_of_work(sessions) as session:
        await repository.prune(session, now - timedelta(days=1))
        await repository.add(
            session,
            session_id=session_id,
            token_hash=hash_key(token),
            csrf_hash=hash_key(csrf),
            key_id=principal.key_id,
            expires_at=now + lifetime,
        )
        details = {"session": session_id, "scope": principal.scope}
        await audit.record(
            session, audit.actor_of(principal), "console.sign_in", f"session:{session_id}", details
        )
    secure, max_age = _secure(request), int(lifetime.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure
    )
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, samesite="strict", secure=secure)
    return SessionOut(
        key_id=principal.key_id,
        scopes=principal.scope.split(),
        via="session",
        expires_at=now + lifetime,
    )


@router.get("/session", responses={401: {"model": Problem}})
async def who(principal: Annotated[Principal, Depends(current_principal)]) -> SessionOut:
    """Who the caller is: key id and scopes (the console asks on load)."""
    via = "session" if principal.session_id else "key"
    return SessionOut(key_id=principal.key_id, scopes=principal.scope.split(), via=via)


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"model": Problem}, 403: {"model": Problem}},
)
async def sign_out(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> Response:
    """Sign out: the session is revoked server-side and its cookies cleared."""
    if principal.session_id:
        sessions = cast(async_sessionmaker[AsyncSession], request.app.state.sessions)
        async with unit_of_work(sessions) as session:
            if await repository.revoke(session, principal.session_id):
                target = f"session:{principal.session_id}"
                details = {"session": principal.session_id}
                actor = audit.actor_of(principal)
                await audit.record(session, actor, "console.sign_out", target, details)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response


class ConsoleFiles(StaticFiles):
    """The console's static files, with a strict content security policy."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the pages at /console/ (index.html) from the package."""
    app.mount("/console", ConsoleFiles(directory=STATIC, html=True), name="console")
