"""Privacy at the edge, against the real broker and database: CRM deletions become
erasure requests, events of suppressed customers and identifiers are never published
(the answer names them), and call notes and other free text stay in ingest."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from eventschemas.envelope import Envelope, deterministic_event_id
from eventschemas.events import identity_digest, suppression_digest
from ingest.app import create_app
from ingest.config import IngestSettings
from ingest.metrics import REGISTRY
from tests.integration.test_ingest_webhooks import (
    generic_headers,
    hubspot_headers,
    nothing_published,
    published,
)
from tests.kafka_helpers import eventually, read_topic, topic_size

pytestmark = pytest.mark.integration
HUBSPOT_URL = "http://ingest/v1/webhooks/hubspot"
GENERIC_URL = "http://ingest/v1/webhooks/generic"
AT = "2026-11-20T10:00:00+08:00"
GONE_EMAIL = "gone.person@example.cn"
NOTES = "NOTE-SECRET Mrs Zhang wants 20 units"


def hubspot_event(**fields: Any) -> dict[str, Any]:
    """A subscription event as HubSpot documents it (now, portal 33, contact 601)."""
    return {
        "eventId": 4001,
        "subscriptionId": 78,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": int(time.time() * 1000) - 60_000,
        "subscriptionType": "contact.privacyDeletion",
        "attemptNumber": 0,
        "objectId": 601,
        "changeSource": "GDPR",
        **fields,
    }


async def post_hubspot(
    ingest: httpx.AsyncClient, settings: IngestSettings, events: list[dict[str, Any]]
) -> httpx.Response:
    body = orjson.dumps(events)
    return await ingest.post(
        HUBSPOT_URL, content=body, headers=hubspot_headers(settings, HUBSPOT_URL, body)
    )


async def post_generic(
    ingest: httpx.AsyncClient, settings: IngestSettings, events: list[dict[str, Any]]
) -> httpx.Response:
    body = orjson.dumps({"events": events})
    return await ingest.post(GENERIC_URL, content=body, headers=generic_headers(settings, body))


def order(order_id: str, customer_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": customer_id, "amount": "10",
            "currency": "CNY", "placed_at": AT}  # fmt: skip


def call(call_id: str, **who: Any) -> dict[str, Any]:
    return {"call_id": call_id, "started_at": AT, "outcome": "interested",
            "intent": "high", "notes": NOTES, **who}  # fmt: skip


async def suppress(
    sessions: async_sessionmaker[AsyncSession], key: bytes, kind: str, value: str, *, lifted: bool
) -> None:
    """A suppression row as the classifier writes it when it erases (lifted: consent back)."""
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO suppressions (kind, digest, lifted_at) VALUES (:kind, :digest, "
                "CASE WHEN :lifted THEN now() END)"
            ),
            {"kind": kind, "digest": suppression_digest(key, kind, value), "lifted": lifted},
        )


def suppressed_total() -> float:
    return REGISTRY.get_sample_value("ingest_suppressed_events_total") or 0.0


async def raw_topic(settings: IngestSettings, expected: int) -> list[bytes]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.activity_topic, expected=expected
    )
    return [r.value for r in records]


async def test_a_hubspot_privacy_deletion_is_one_erasure_request_a_plain_deletion_none(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    deletion = hubspot_event(subscriptionType="contact.deletion", eventId=4002)
    response = await post_hubspot(ingest, ingest_settings, [hubspot_event(), deletion])
    retry = await post_hubspot(ingest, ingest_settings, [hubspot_event(attemptNumber=1)])
    other = await post_hubspot(ingest, ingest_settings, [hubspot_event(eventId=4003)])

    assert response.status_code == retry.status_code == other.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [i["index"] for i in body["ignored"]] == [1]
    first, again, third = await published(ingest_settings, 3)
    envelopes = sorted([first, again, third], key=lambda e: e.time)
    assert {e.type for e in envelopes} == {"customer.erasure_requested"}
    assert {(e.source, e.subject) for e in envelopes} == {("crm/hubspot", "hubspot-contact-601")}
    by_event = {e.id: e for e in envelopes}
    assert body["event_ids"][0] == retry.json()["event_ids"][0] in by_event
    erasure = by_event[body["event_ids"][0]].data
    assert str(uuid.UUID(erasure["erasure_id"])) == erasure["erasure_id"]
    assert erasure["requested_by"] == "crm/hubspot"
    # The retry is the same request (one receipt); another deletion is another.
    assert [e.data["erasure_id"] for e in envelopes].count(erasure["erasure_id"]) == 2
    assert by_event[other.json()["event_ids"][0]].data["erasure_id"] != erasure["erasure_id"]
    assert (
        await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
        == 3
    )


async def test_a_generic_contact_erased_by_e_mail_carries_only_its_digest(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    erased = {"type": "contact.erased", "id": "del-1", "email": " Gone.Person@Example.CN ",
              "occurred_at": AT}  # fmt: skip

    response = await post_generic(ingest, ingest_settings, [erased])
    retry = await post_generic(ingest, ingest_settings, [erased])

    assert response.status_code == retry.status_code == 202, response.text
    assert response.json()["event_ids"] == retry.json()["event_ids"]
    raw = await raw_topic(ingest_settings, 2)
    assert len(raw) == 2
    assert b"gone.person" not in b"".join(raw).lower()
    first, second = (Envelope.from_bytes(r) for r in raw)
    key = ingest_settings.identity_key_bytes()
    assert first.type == "customer.erasure_requested"
    assert first.data["identity"]["email_hash"] == identity_digest(key, "email", GONE_EMAIL)
    assert first.data["requested_by"] == "crm/generic"
    assert first.subject.startswith("id-e-")
    assert first.data["erasure_id"] == second.data["erasure_id"]


async def test_events_of_suppressed_customers_and_e_mails_are_answered_and_never_published(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = ingest_settings.identity_key_bytes()
    await suppress(sessions, key, "customer", "cust-erased", lifted=False)
    email_digest = identity_digest(key, "email", GONE_EMAIL)
    await suppress(sessions, key, "email", email_digest, lifted=False)
    # Lifted (the person came back with consent): published again.
    await suppress(sessions, key, "customer", "cust-back", lifted=True)
    before = suppressed_total()

    single = await ingest.post("/v1/orders", json=order("SO-1", "cust-erased"))
    by_mail = await ingest.post("/v1/calls", json=call("CALL-1", email="Gone.Person@example.cn"))
    batch = await ingest.post(
        "/v1/orders:batch",
        json=[
            order("SO-2", "cust-erased"),
            order("SO-3", "cust-other"),
            order("SO-4", "cust-back"),
        ],
    )
    header = "order_id,customer_id,amount,currency,placed_at\n"
    rows = f"SO-5,cust-erased,10,CNY,{AT}\nSO-6,cust-other,10,CNY,{AT}\n"
    imported = await ingest.post(
        "/v1/imports/orders", files={"file": ("o.csv", (header + rows).encode(), "text/csv")}
    )
    hook = await post_generic(
        ingest,
        ingest_settings,
        [
            {
                "type": "contact.updated",
                "id": "evt-9",
                "customer_id": "cust-erased",
                "occurred_at": AT,
                "attributes": {"industry": "retail"},
            },
            # An erasure request is never suppressed: it must reach the worker.
            {
                "type": "contact.erased",
                "id": "del-9",
                "customer_id": "cust-erased",
                "occurred_at": AT,
            },
        ],
    )

    for response in (single, by_mail, batch, imported, hook):
        assert response.status_code == 202, response.text
    assert single.json()["accepted"] == 0
    assert len(single.json()["suppressed"]) == 1
    assert single.json()["event_ids"] == []
    assert by_mail.json()["accepted"] == 0
    assert len(by_mail.json()["suppressed"]) == 1
    assert batch.json()["accepted"] == 2
    assert len(batch.json()["suppressed"]) == 1
    assert batch.json()["customer_ids"] == ["cust-other", "cust-back"]
    assert imported.json()["accepted"] == 1
    assert imported.json()["suppressed_lines"] == [2]
    assert hook.json()["accepted"] == 1
    assert len(hook.json()["suppressed"]) == 1
    published_now = await published(ingest_settings, 4)
    size = await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
    assert size == 4
    assert sorted((e.type, e.subject) for e in published_now) == [
        ("customer.erasure_requested", "cust-erased"),
        ("order.placed", "cust-back"),
        ("order.placed", "cust-other"),
        ("order.placed", "cust-other"),
    ]
    suppressed_ids = {
        *single.json()["suppressed"], *by_mail.json()["suppressed"],
        *batch.json()["suppressed"], *imported.json()["suppressed"], *hook.json()["suppressed"],
    }  # fmt: skip
    assert len(suppressed_ids) == 5
    assert suppressed_ids.isdisjoint(e.id for e in published_now)
    assert suppressed_total() - before == 5


async def test_call_notes_stay_in_ingest_unless_the_setting_keeps_them(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    single = await ingest.post("/v1/calls", json=call("CALL-1", customer_id="c-1"))
    batch = await ingest.post("/v1/calls:batch", json=[call("CALL-2", customer_id="c-1")])
    header = "call_id,customer_id,started_at,outcome,notes\n"
    imported = await ingest.post(
        "/v1/imports/calls",
        files={
            "file": ("c.csv", f"{header}CALL-3,c-1,{AT},connected,{NOTES}\n".encode(), "text/csv")
        },
    )
    hook = await post_generic(
        ingest,
        ingest_settings,
        [
            {
                "type": "contact.updated",
                "id": "evt-1",
                "customer_id": "c-1",
                "occurred_at": AT,
                "attributes": {"industry": "retail", "notes": NOTES},
            }
        ],
    )
    for response in (single, batch, imported, hook):
        assert response.status_code == 202, response.text

    raw = await raw_topic(ingest_settings, 4)
    assert len(raw) == 4
    assert b"NOTE-SECRET" not in b"".join(raw)
    envelopes = [Envelope.from_bytes(r) for r in raw]
    assert [e.data["notes"] for e in envelopes if e.type == "call.logged"] == [None] * 3
    [update] = [e for e in envelopes if e.type == "crm.contact.updated"]
    assert update.data["attributes"] == {"industry": "retail"}

    # With INGEST_KEEP_FREE_TEXT=true the operator chose to keep them.
    async with ingest_app(ingest_settings.model_copy(update={"keep_free_text": True})) as kept:
        response = await kept.post("/v1/calls", json=call("CALL-4", customer_id="c-1"))
    assert response.status_code == 202, response.text
    raw = await raw_topic(ingest_settings, 5)
    [with_notes] = [Envelope.from_bytes(r) for r in raw if b"CALL-4" in r]
    assert with_notes.data["notes"] == NOTES


@asynccontextmanager
async def ingest_app(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    """Another ingest app (no keys: a trusted network), publishing to the test's topic."""
    app = create_app(settings.model_copy(update={"auth_enabled": False}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


async def test_a_database_outage_during_the_suppression_check_is_a_503_and_nothing_published(
    ingest_settings: IngestSettings,
) -> None:
    down = ingest_settings.model_copy(
        update={
            "database_url": "postgresql://nobody:nothing@127.0.0.1:1/none",
            "conflict_check": False,
            "database_timeout_seconds": 1,
        }
    )
    async with ingest_app(down) as client:
        response = await client.post("/v1/orders", json=order("SO-1", "c-1"))

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert await nothing_published(ingest_settings)


async def test_a_hubspot_privacy_deletion_erases_with_a_receipt_and_later_orders_are_suppressed(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    worker: None,
    api: httpx.AsyncClient,
) -> None:
    customer = "hubspot-contact-701"
    first = await ingest.post("/v1/orders", json=order("SO-701", customer))
    assert first.status_code == 202, first.text

    async def known() -> bool:
        return (await api.get(f"/v1/customers/{customer}/export")).status_code == 200

    await eventually(known, within=60)
    deletion = await post_hubspot(ingest, ingest_settings, [hubspot_event(objectId=701)])
    assert deletion.status_code == 202, deletion.text
    [event_id] = deletion.json()["event_ids"]
    [erasure] = [e for e in await published(ingest_settings, 2) if e.id == event_id]

    async def completed() -> dict[str, Any] | None:
        answer = await api.get(f"/v1/erasures/{erasure.data['erasure_id']}")
        if answer.status_code != 200 or answer.json()["status"] != "completed":
            return None
        return dict(answer.json())

    receipt = await eventually(completed, within=60)
    assert receipt["erased"]["customers"] == 1

    again = await ingest.post("/v1/orders", json=order("SO-702", customer))
    assert again.status_code == 202, again.text
    assert again.json()["accepted"] == 0
    assert again.json()["suppressed"] == [
        deterministic_event_id(ingest_settings.source, "order.placed", "SO-702", 0)
    ]
    assert (
        await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
        == 2
    )


async def test_concurrent_requests_share_the_suppression_check_and_each_gets_its_answer(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = ingest_settings.identity_key_bytes()
    await suppress(sessions, key, "customer", "cust-erased", lifted=False)
    customers = [("cust-erased" if n % 2 else f"cust-{n}") for n in range(20)]

    answers = await asyncio.gather(
        *(ingest.post("/v1/orders", json=order(f"SO-{n}", c)) for n, c in enumerate(customers))
    )

    for n, answer in enumerate(answers):
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == (0 if n % 2 else 1), n
        assert len(answer.json()["suppressed"]) == n % 2, n
    envelopes = await published(ingest_settings, 10)
    assert (
        await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
        == 10
    )
    assert {e.subject for e in envelopes} == {c for c in customers if c != "cust-erased"}
