"""Who may write: intake keys and scopes, quotas, conflicting re-sends, formula-safe ids.

Real PostgreSQL (the key store, the fingerprints) and a real Kafka topic: what
is refused must not be published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.auth import create_key, revoke_key
from classifier.locks import Lock
from eventschemas.envelope import Envelope
from ingest.app import create_app
from ingest.config import IngestSettings
from ingest.fingerprints import PRUNE_LOCK, Fingerprints
from ingest.keys import open_pool
from ingest.orders.schemas import OrderIn
from ingest.orders.service import order_placed
from tests.kafka_helpers import topic_size

pytestmark = pytest.mark.integration


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": "cust-1",
        "amount": "100.50",
        "currency": "EUR",
        "placed_at": "2026-11-01T10:00:00+01:00",
        **changes,
    }


CALL = {
    "call_id": "CALL-1",
    "customer_id": "cust-1",
    "started_at": "2026-11-01T10:00:00+01:00",
    "outcome": "interested",
}


@asynccontextmanager
async def serve(settings: IngestSettings, key: str | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=headers
        ) as client:
            yield client


async def published(settings: IngestSettings) -> int:
    return await topic_size(settings.kafka_bootstrap_servers, settings.activity_topic)


async def test_intake_without_a_valid_key_is_401_and_publishes_nothing(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with serve(ingest_settings, None) as anonymous:
        missing = await anonymous.post("/v1/orders", json=order("SO-1"))
        batch = await anonymous.post("/v1/calls:batch", json=[CALL])
        imported = await anonymous.post(
            "/v1/imports/orders", files={"file": ("o.csv", b"order_id\nx\n", "text/csv")}
        )
        wrong = await anonymous.post(
            "/v1/orders", json=order("SO-1"), headers={"Authorization": "Bearer ck_x_nope"}
        )
        # Invalid input without a key: the key is checked first, the body not read.
        invalid = await anonymous.post("/v1/orders", json={"order_id": "=1"})

    for response in (missing, batch, imported, wrong, invalid):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
    assert "unknown or revoked" in wrong.json()["detail"]
    assert await published(ingest_settings) == 0


async def test_a_key_without_the_scope_is_403_and_publishes_nothing(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, calls_only = await create_key(sessions, "calls", "calls:write")
    _, reader = await create_key(sessions, "reader", "read admin")
    async with serve(ingest_settings, calls_only) as client:
        refused = await client.post("/v1/orders", json=order("SO-1"))
        refused_refund = await client.post(
            "/v1/orders/SO-1/cancellation",
            json={"customer_id": "c", "cancelled_at": "2026-11-02T10:00:00Z"},
        )
        refused_import = await client.post(
            "/v1/imports/calls", files={"file": ("c.csv", b"call_id\nx\n", "text/csv")}
        )
        by_reader = await client.post(
            "/v1/calls", json=CALL, headers={"Authorization": f"Bearer {reader}"}
        )
        assert await published(ingest_settings) == 0
        allowed = await client.post("/v1/calls", json=CALL)

    assert refused.status_code == 403
    assert "orders:write" in refused.json()["detail"]
    assert refused_refund.status_code == 403
    assert refused_import.status_code == 403
    assert "imports:write" in refused_import.json()["detail"]
    assert by_reader.status_code == 403
    assert allowed.status_code == 202
    assert await published(ingest_settings) == 1


async def test_a_revoked_key_is_refused(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key_id, key = await create_key(sessions, "shop", ["orders:write"])
    settings = ingest_settings.model_copy(update={"api_key_cache_seconds": 0})
    async with serve(settings, key) as client:
        before = await client.post("/v1/orders", json=order("SO-1"))
        assert await revoke_key(sessions, key_id)
        after = await client.post("/v1/orders", json=order("SO-2"))

    assert before.status_code == 202
    assert after.status_code == 401
    assert await published(ingest_settings) == 1


async def test_the_key_store_down_is_503_with_retry_after(
    ingest_settings: IngestSettings,
) -> None:
    # Nothing listens on port 1: the lookup fails fast and nothing is accepted.
    settings = ingest_settings.model_copy(
        update={
            "database_url": "postgresql+asyncpg://nobody:x@127.0.0.1:1/none",
            "database_timeout_seconds": 1,
            "retry_after_seconds": 3,
        }
    )
    async with serve(settings, "ck_abc_def") as client:
        response = await client.post("/v1/orders", json=order("SO-1"))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert await published(ingest_settings) == 0


async def test_a_key_over_its_quota_gets_429_and_nothing_beyond_is_published(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key_id, key = await create_key(sessions, "shop", "orders:write", rate_per_second=0.5, burst=3)
    async with serve(ingest_settings, key) as client:
        within = [await client.post("/v1/orders", json=order(f"SO-{i}")) for i in range(3)]
        over = await client.post("/v1/orders", json=order("SO-3"))
        over_batch = await client.post("/v1/orders:batch", json=[order("SO-4"), order("SO-5")])

    assert [r.status_code for r in within] == [202, 202, 202]
    assert within[0].headers["ratelimit-limit"] == "3"
    assert within[0].headers["ratelimit-remaining"] == "2"
    assert within[2].headers["ratelimit-remaining"] == "0"
    assert within[0].headers["ratelimit-policy"] == '"intake";q=3;w=6'
    # 2 s until one event is back at 0.5/s, 4 s for two.
    assert over.headers["retry-after"] == "2"
    assert over_batch.headers["retry-after"] == "4"
    for refused in (over, over_batch):
        assert refused.status_code == 429
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.headers["ratelimit"].startswith('"intake";r=0;')
        assert refused.json()["type"].endswith("/rate-limited")
    assert await published(ingest_settings) == 3
    assert f'ingest_rate_limited_events_total{{key_id="{key_id}"}} 3.0' in (
        generate_latest().decode()
    )


async def test_a_key_without_quota_and_the_default_quota(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, unlimited = await create_key(sessions, "bulk", "orders:write", rate_per_second=0)
    _, default = await create_key(sessions, "shop", "orders:write")
    settings = ingest_settings.model_copy(update={"default_rate_per_second": 1, "default_burst": 2})
    items = [order(f"SO-{i}") for i in range(10)]
    async with serve(settings, unlimited) as client:
        bulk = await client.post("/v1/orders:batch", json=items)
        bulk_again = await client.post("/v1/orders:batch", json=items)
        # A batch larger than the burst passes when the bucket is full, then waits.
        first = await client.post(
            "/v1/orders:batch", json=items[:5], headers={"Authorization": f"Bearer {default}"}
        )
        second = await client.post(
            "/v1/orders", json=items[5], headers={"Authorization": f"Bearer {default}"}
        )

    assert bulk.status_code == bulk_again.status_code == 202
    assert "ratelimit-limit" not in bulk.headers
    assert first.status_code == 202
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 4  # 4 events of debt at 1/s, then 1 more


async def test_a_resend_with_another_amount_is_409_naming_the_field(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    first = await ingest.post("/v1/orders", json=order("SO-9"))
    same = await ingest.post("/v1/orders", json=order("SO-9", amount=100.5))
    same_instant = await ingest.post(
        "/v1/orders", json=order("SO-9", placed_at="2026-11-01T09:00:00Z")
    )
    changed = await ingest.post("/v1/orders", json=order("SO-9", amount="99", currency="USD"))
    revised = await ingest.post("/v1/orders", json=order("SO-9", amount="99", revision=1))

    assert first.status_code == same.status_code == same_instant.status_code == 202
    assert same.json()["event_ids"] == first.json()["event_ids"]
    assert changed.status_code == 409
    problem = changed.json()
    assert problem["type"].endswith("/conflicting-resend")
    assert [e["field"] for e in problem["errors"]] == ["amount", "currency"]
    assert "revision" in problem["errors"][0]["message"]
    assert revised.status_code == 202
    # first, its two identical re-sends (idempotent: the classifier drops them), revision 1
    assert await published(ingest_settings) == 4


async def test_conflicts_in_batches_and_imports_are_reported_per_item(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    await ingest.post("/v1/orders", json=order("SO-1"))
    batch = await ingest.post(
        "/v1/orders:batch",
        json=[order("SO-2"), order("SO-1", status="paid"), order("SO-3")],
    )
    only_conflicts = await ingest.post("/v1/orders:batch", json=[order("SO-2", amount="1")])
    within_batch = await ingest.post(
        "/v1/orders:batch", json=[order("SO-7"), order("SO-7", amount="7")]
    )
    csv = (
        "order_id,customer_id,amount,currency,placed_at\n"
        "SO-3,cust-1,100.50,EUR,2026-11-01T10:00:00+01:00\n"
        "SO-1,cust-2,100.50,EUR,2026-11-01T10:00:00+01:00\n"
        "SO-8,cust-1,100.50,EUR,2026-11-01T10:00:00+01:00\n"
    )
    imported = await ingest.post(
        "/v1/imports/orders", files={"file": ("o.csv", csv.encode(), "text/csv")}
    )

    assert batch.status_code == 202
    body = batch.json()
    assert body["accepted"] == 2
    assert [(r["index"], [e["field"] for e in r["errors"]]) for r in body["rejected"]] == [
        (1, ["status"])
    ]
    assert only_conflicts.status_code == 409
    assert only_conflicts.json()["errors"][0]["field"] == "[0].amount"
    assert within_batch.json()["accepted"] == 1
    assert within_batch.json()["rejected"][0]["index"] == 1
    assert imported.status_code == 202
    report = imported.json()
    assert (report["accepted"], report["rejected"]) == (2, 1)
    assert report["errors"][0]["line"] == 3
    assert report["errors"][0]["field"] == "customer_id"
    # SO-1, SO-2, SO-3, SO-7, then SO-3 (identical) and SO-8 from the file
    assert await published(ingest_settings) == 6


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/orders", order('=HYPERLINK("http://x","y")'), "order_id"),
        ("/v1/orders", order("SO-1", customer_id="+cmd|' /C calc'!A0"), "customer_id"),
        ("/v1/orders", order("-2+3"), "order_id"),
        ("/v1/orders", order("@SUM(A1)"), "order_id"),
        ("/v1/orders", order("SO\n1"), "order_id"),
        ("/v1/orders", order("SO\r1"), "order_id"),
        ("/v1/orders/=1+1/refunds", {}, "order_id"),
        ("/v1/calls", {**CALL, "agent_id": "=A1"}, "agent_id"),
        ("/v1/calls", {**CALL, "call_id": "\t=1"}, "call_id"),
    ],
)
async def test_formula_like_and_multiline_ids_are_422(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await ingest.post(path, json=body)

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await published(ingest_settings) == 0


async def test_openapi_declares_the_intake_key(ingest: httpx.AsyncClient) -> None:
    schema = (await ingest.get("/openapi.json")).json()

    assert schema["components"]["securitySchemes"]["IntakeKey"]["scheme"] == "bearer"
    for path, method in [
        ("/v1/orders", "post"),
        ("/v1/orders:batch", "post"),
        ("/v1/orders/{order_id}/refunds", "post"),
        ("/v1/calls", "post"),
        ("/v1/imports/orders", "post"),
    ]:
        operation = schema["paths"][path][method]
        assert operation["security"] == [{"IntakeKey": []}]
        assert {"401", "403", "429"} <= operation["responses"].keys()
        if not path.startswith("/v1/imports"):
            assert "409" in operation["responses"]
    webhook = schema["paths"]["/v1/webhooks/{source}"]["post"]
    assert "security" not in webhook


async def test_fingerprints_older_than_the_retention_are_pruned(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession], intake_key: str
) -> None:
    app = create_app(ingest_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {intake_key}"},
        ) as client:
            old = await client.post("/v1/orders", json=order("SO-old"))
            await client.post("/v1/orders", json=order("SO-new"))
            async with sessions.begin() as session:
                await session.execute(
                    text(
                        "UPDATE intake_fingerprints SET created_at = now() - interval '3 days' "
                        "WHERE event_id = :id"
                    ),
                    {"id": old.json()["event_ids"][0]},
                )
            pruned = await app.state.fingerprints.prune(2)
            old_changed = await client.post("/v1/orders", json=order("SO-old", amount="1"))
            new_changed = await client.post("/v1/orders", json=order("SO-new", amount="1"))

    assert pruned == 1
    assert old_changed.status_code == 202  # no longer compared
    assert new_changed.status_code == 409


async def test_one_ingest_process_prunes_at_a_time(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession], intake_key: str
) -> None:
    app = create_app(ingest_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {intake_key}"},
        ) as client:
            await client.post("/v1/orders", json=order("SO-aged"))
        async with sessions.begin() as session:
            await session.execute(
                text("UPDATE intake_fingerprints SET created_at = now() - interval '3 days'")
            )
        # Another ingest process (here: another connection) is pruning: this one skips.
        async with sessions() as other:
            assert await other.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": PRUNE_LOCK})
            skipped = await app.state.fingerprints.prune(2)
            await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PRUNE_LOCK})
        pruned = await app.state.fingerprints.prune(2)

    assert skipped is None
    assert pruned == 1
    assert PRUNE_LOCK == Lock.INTAKE_PRUNE  # registered with every other advisory lock


async def test_concurrent_requests_share_one_statement_and_still_see_conflicts(
    ingest_settings: IngestSettings,
) -> None:
    def envelope(order_id: str, amount: str) -> Envelope:
        event = order_placed(
            ingest_settings, OrderIn.model_validate(order(order_id, amount=amount))
        )
        return event.to_envelope(ingest_settings.source)

    assert ingest_settings.database_url
    pool = await open_pool(ingest_settings.database_url, size=2, call_timeout=5)
    try:
        fingerprints = Fingerprints(pool, timeout=5, retry_after=1)
        # Started in one turn of the loop: checked and recorded by one statement.
        first, same, changed, other = await asyncio.gather(
            fingerprints.record([envelope("SO-c", "10")]),
            fingerprints.record([envelope("SO-c", "10")]),
            fingerprints.record([envelope("SO-c", "11")]),
            fingerprints.record([envelope("SO-d", "10"), envelope("SO-d", "12")]),
        )
        later = await fingerprints.record([envelope("SO-c", "11")])
    finally:
        await pool.close()

    assert first == ({}, [envelope("SO-c", "10").id])  # recorded by the first to send it
    assert same == ({}, [])  # an identical re-send: accepted, not recorded again
    assert changed == ({0: ["amount"]}, [])  # the first of the statement is the reference
    assert other == ({1: ["amount"]}, [envelope("SO-d", "10").id])
    assert later == ({0: ["amount"]}, [])
