"""Console sessions on the real database: sign-in cookies, CSRF on state changes, the
key's scope, expiry, revocation and sign-out; the pages' headers; the console's reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.app import create_app
from classifier.auth import INTAKE_SCOPES, create_key, revoke_key
from classifier.changes import router as changes_router
from classifier.config import ClassifierSettings
from classifier.engine import default_scheme_text
from classifier.models import ConsoleSession
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import OrderPlaced

pytestmark = pytest.mark.integration


@pytest.fixture
async def keys(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    found = {}
    for name, scope in (("read", "read"), ("admin", "admin"), ("intake", INTAKE_SCOPES)):
        found[f"{name}_id"], found[name] = await create_key(sessions, f"console-{name}", scope)
    return found


@pytest.fixture
async def app_client(classifier_settings: ClassifierSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(classifier_settings.model_copy(update={"api_key_cache_seconds": 0}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def sign_in(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    return await client.post("/v1/console/session", json={"key": key}, headers=headers)


def set_cookies(answer: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in answer.headers.get_list("set-cookie")}


async def test_sign_in_sets_strict_http_only_cookies_secure_over_https(
    app_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    answer = await sign_in(app_client, keys["read"])
    assert answer.status_code == 201, answer.text
    assert answer.json()["scopes"] == ["read"]
    cookies = set_cookies(answer)
    session, csrf = cookies["classifier_session"], cookies["classifier_csrf"]
    assert "HttpOnly" in session
    assert "samesite=strict" in session.lower()
    assert "Secure" not in session  # plain http (a developer's machine)
    assert "HttpOnly" not in csrf  # the page's script repeats it in X-CSRF-Token
    assert keys["read"] not in session  # the cookie is a session token, not the key
    behind_tls = await sign_in(app_client, keys["read"], **{"X-Forwarded-Proto": "https"})
    assert all("Secure" in c for c in set_cookies(behind_tls).values())


async def test_sign_in_refuses_bad_keys_intake_keys_and_other_origins(
    app_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    assert (await sign_in(app_client, "ck_nope_nope")).status_code == 401
    assert (await sign_in(app_client, keys["intake"])).status_code == 403
    foreign = await sign_in(app_client, keys["admin"], origin="https://evil.example")
    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers


async def test_the_session_carries_the_keys_scope_and_state_changes_need_the_csrf_token(
    app_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await sign_in(app_client, keys["read"])
    assert (await app_client.get("/v1/classes/counts")).status_code == 200
    assert (await app_client.get("/v1/changes/head")).json() == {"position": 0}
    csrf = app_client.cookies["classifier_csrf"]
    # A read key's session may not change the standard, token or not.
    refused = await app_client.post("/v1/schemes/1/activate", headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 403

    app_client.cookies.clear()
    await sign_in(app_client, keys["admin"])
    csrf = app_client.cookies["classifier_csrf"]
    body, yaml = default_scheme_text(), "application/yaml"
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        missing = await app_client.post(
            "/v1/schemes", content=body, headers={"Content-Type": yaml, **headers}
        )
        assert missing.status_code == 403
        assert "CSRF" in missing.json()["detail"]
    made = await app_client.post(
        "/v1/schemes", content=body, headers={"Content-Type": yaml, "X-CSRF-Token": csrf}
    )
    assert made.status_code == 201, made.text
    # Reads need no token; a header key still works next to a cookie.
    who = await app_client.get("/v1/console/session")
    assert who.json()["via"] == "session"
    assert who.json()["scopes"] == ["admin"]
    by_key = await app_client.get(
        "/v1/console/session", headers={"Authorization": f"Bearer {keys['read']}"}
    )
    assert by_key.json() == {**by_key.json(), "via": "key", "scopes": ["read"]}


async def test_sign_out_expiry_and_key_revocation_end_sessions_at_once(
    app_client: httpx.AsyncClient, keys: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    await sign_in(app_client, keys["admin"])
    token = app_client.cookies["classifier_session"]
    csrf = app_client.cookies["classifier_csrf"]
    ended = await app_client.delete("/v1/console/session", headers={"X-CSRF-Token": csrf})
    assert ended.status_code == 204
    app_client.cookies.set("classifier_session", token)  # the old cookie, replayed
    assert (await app_client.get("/v1/changes/head")).status_code == 401

    app_client.cookies.clear()
    await sign_in(app_client, keys["read"])
    assert (await app_client.get("/v1/changes/head")).status_code == 200
    async with sessions.begin() as session:
        await session.execute(
            update(ConsoleSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = await app_client.get("/v1/changes/head")
    assert expired.status_code == 401
    assert "sign in again" in expired.json()["detail"]

    app_client.cookies.clear()
    await sign_in(app_client, keys["read"])
    assert (await app_client.get("/v1/changes/head")).status_code == 200
    assert await revoke_key(sessions, keys["read_id"])
    assert (await app_client.get("/v1/changes/head")).status_code == 401

    trail = await app_client.get(
        "/v1/audit", params={"action": "console."}, headers={"X-API-Key": keys["admin"]}
    )
    entries = [(e["action"], e["actor"]) for e in trail.json()["entries"]]
    assert ("console.sign_in", f"api-key:{keys['admin_id']}") in entries
    assert ("console.sign_out", f"api-key:{keys['admin_id']}") in entries


async def test_pages_are_served_with_a_strict_content_security_policy(
    app_client: httpx.AsyncClient,
) -> None:
    assert (await app_client.get("/console")).status_code in (307, 308)
    page = await app_client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = await app_client.get("/console/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


async def test_daily_counts_follow_the_class_history(
    app_client: httpx.AsyncClient, keys: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    await ensure_active_scheme(sessions)
    now = datetime.now(UTC)
    events = [
        OrderPlaced(
            order_id=f"D-{n}",
            customer_id=f"daily-{n}",
            amount=Decimal(50),
            currency="USD",
            amount_base=Decimal(50),
            base_currency="USD",
            placed_at=now - timedelta(days=days_ago),
        )
        for n, days_ago in enumerate((10, 3))
    ]
    processor = BatchProcessor(sessions, SchemeCache())
    await processor.process([Delivery(e.to_envelope("test"), e, partition=0) for e in events])
    while await processor.review_due(int(time.time() * 1e6), 1000):
        pass
    answer = await app_client.get(
        "/v1/classes/value/daily", params={"days": 30}, headers={"X-API-Key": keys["read"]}
    )
    assert answer.status_code == 200
    days = answer.json()["days"]
    assert len(days) == 30
    assert days[-1]["counts"] == {"low": 2}  # now
    assert days[-5]["counts"] == {"low": 1}  # before the second customer's order
    assert days[0]["counts"] == {}


async def test_a_stream_opened_with_a_session_ends_when_the_session_does(
    app_client: httpx.AsyncClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes_router, "SESSION_CHECK_SECONDS", 0.1)
    await sign_in(app_client, keys["read"])
    csrf = app_client.cookies["classifier_csrf"]
    stream = asyncio.create_task(app_client.get("/v1/changes/stream"))
    await asyncio.sleep(0.5)
    assert not stream.done()  # streaming (heartbeats) while the session lasts
    ended = await app_client.delete("/v1/console/session", headers={"X-CSRF-Token": csrf})
    assert ended.status_code == 204
    answer = await asyncio.wait_for(stream, timeout=5)
    assert answer.status_code == 200
    assert answer.text.startswith("retry: 1000")
