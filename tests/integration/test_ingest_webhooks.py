"""CRM webhooks against the real broker: each vendor's authentication, mapping and refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from ingest.app import create_app
from ingest.config import IngestSettings
from tests.identities import digested
from tests.kafka_helpers import read_topic, topic_size

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def secret(value: Any) -> str:
    return str(value.get_secret_value())


def generic_headers(
    settings: IngestSettings, body: bytes, *, at: float | None = None
) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    key = secret(settings.generic_webhook_secret).encode()
    signature = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "X-Webhook-Timestamp": ts,
        "X-Webhook-Signature": f"v1={signature}",
    }


def hubspot_headers(
    settings: IngestSettings, url: str, body: bytes, *, at_ms: int | None = None
) -> dict[str, str]:
    """Sign as HubSpot documents v3: base64(HMAC-SHA256(secret, method+uri+body+timestamp))."""
    ts = str(int(time.time() * 1000) if at_ms is None else at_ms)
    key = secret(settings.hubspot_client_secret).encode()
    digest = hmac.new(key, b"POST" + url.encode() + body + ts.encode(), hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
    }


async def published(settings: IngestSettings, expected: int) -> list[Envelope]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.activity_topic, expected=expected
    )
    envelopes = [Envelope.from_bytes(r.value) for r in records]
    assert [r.key.decode() for r in records] == [e.subject for e in envelopes]
    # Order is kept per customer (one partition each); across customers, sort by id.
    return sorted(envelopes, key=lambda e: e.subject)


async def nothing_published(settings: IngestSettings) -> bool:
    return await topic_size(settings.kafka_bootstrap_servers, settings.activity_topic) == 0


GENERIC = {
    "events": [
        {
            "type": "contact.updated",
            "id": "evt-1",
            "customer_id": "cust-42",
            "occurred_at": "2026-11-20T10:00:00+08:00",
            "attributes": {"industry": "Retail", "employee_count": "45"},
            "tags": ["vip"],
            "email": " Ann@Example.COM ",
            "phone": "138 0013 8000",
        },
        {
            "type": "deal.stage_changed",
            "id": "evt-2",
            "customer_id": "cust-42",
            "deal_id": "D-7",
            "stage": "negotiation",
            "amount": "5000",
            "currency": "cny",
            "occurred_at": "2026-11-20T10:05:00+08:00",
        },
    ]
}


async def test_generic_webhook_publishes_normalised_crm_events(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, identity_key: bytes
) -> None:
    body = orjson.dumps(GENERIC)
    response = await ingest.post(
        "/v1/webhooks/generic", content=body, headers=generic_headers(ingest_settings, body)
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2

    contact, deal = await published(ingest_settings, 2)
    assert (contact.type, contact.source, contact.subject) == (
        "crm.contact.updated",
        "crm/generic",
        "cust-42",
    )
    assert contact.data["attributes"] == {"industry": "retail", "employee_count": 45}
    assert contact.data["tags"] == ["vip"]
    assert contact.data["identity"] == digested(
        identity_key, phone="+8613800138000", email="ann@example.com"
    )
    assert deal.type == "crm.deal.stage_changed"
    assert deal.data["stage"] == "negotiation"
    assert deal.data["amount_base"] == "690.0000"  # 5000 CNY at the default rate 0.138
    assert response.json()["event_ids"] == [contact.id, deal.id]

    # A retried delivery (new timestamp, same notification ids) gets the same event ids.
    again = await ingest.post(
        "/v1/webhooks/generic", content=body, headers=generic_headers(ingest_settings, body)
    )
    assert again.json()["event_ids"] == response.json()["event_ids"]


@pytest.mark.parametrize(
    ("tamper", "status", "problem"),
    [
        ("signature", 401, "bad-signature"),
        ("stale", 401, "stale-timestamp"),
        ("future", 401, "stale-timestamp"),
        ("missing", 401, "bad-signature"),
        ("body", 401, "bad-signature"),
    ],
)
async def test_generic_webhook_refuses_unsigned_or_stale_requests(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    tamper: str,
    status: int,
    problem: str,
) -> None:
    body = orjson.dumps(GENERIC)
    headers = generic_headers(ingest_settings, body)
    if tamper == "signature":
        headers["X-Webhook-Signature"] = "v1=" + "0" * 64
    elif tamper == "stale":
        headers = generic_headers(ingest_settings, body, at=time.time() - 301)
    elif tamper == "future":
        headers = generic_headers(ingest_settings, body, at=time.time() + 360)
    elif tamper == "missing":
        del headers["X-Webhook-Signature"]
    elif tamper == "body":
        body = body.replace(b"negotiation", b"closed_won")

    response = await ingest.post("/v1/webhooks/generic", content=body, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(problem)
    assert await nothing_published(ingest_settings)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b"{not json", "application/json", 422, "body"),
        (b'{"events": []}', "application/json", 422, "events"),
        (orjson.dumps(GENERIC), "text/plain", 415, None),
        (
            orjson.dumps({"events": [{**GENERIC["events"][0], "occurred_at": "yesterday"}]}),
            "application/json",
            422,
            "events.0.contact.updated.occurred_at",
        ),
        (
            orjson.dumps({"events": [{**GENERIC["events"][0], "phone": "12"}]}),
            "application/json",
            422,
            "phone",
        ),
        (
            orjson.dumps({"events": [{**GENERIC["events"][0], "type": "contact.deleted"}]}),
            "application/json",
            422,
            "events.0",
        ),
    ],
)
async def test_generic_webhook_names_what_is_wrong_and_publishes_nothing(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    body: bytes,
    content_type: str,
    status: int,
    field: str | None,
) -> None:
    headers = {**generic_headers(ingest_settings, body), "content-type": content_type}
    response = await ingest.post("/v1/webhooks/generic", content=body, headers=headers)

    assert response.status_code == status, response.text
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]]
    assert await nothing_published(ingest_settings)


async def test_hubspot_documented_batch_is_verified_and_mapped(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    body = (FIXTURES / "hubspot_contacts.json").read_bytes()
    url = "http://ingest/v1/webhooks/hubspot"
    response = await ingest.post(
        url, content=body, headers=hubspot_headers(ingest_settings, url, body)
    )

    assert response.status_code == 202, response.text
    changed, created = await published(ingest_settings, 2)
    assert changed.subject == "hubspot-contact-1246965"
    assert changed.type == "crm.contact.updated"
    assert changed.data["attributes"] == {"lifecyclestage": "subscriber"}
    assert changed.time.timestamp() == 1462216307.945
    assert created.subject == "hubspot-contact-1246978"
    assert created.source == "crm/hubspot"
    assert changed.id != created.id


async def test_hubspot_maps_companies_and_identities_and_reports_deals_as_ignored(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, identity_key: bytes
) -> None:
    body = (FIXTURES / "hubspot_mixed.json").read_bytes()
    url = "http://ingest/v1/webhooks/hubspot?portal=33"
    response = await ingest.post(
        url, content=body, headers=hubspot_headers(ingest_settings, url, body)
    )

    assert response.status_code == 202, response.text
    assert response.json()["ignored"] == [
        {"index": 2, "reason": "deal.propertyChange does not change classes"}
    ]
    company, contact = await published(ingest_settings, 2)
    assert company.type == "crm.company.updated"
    assert company.subject == "hubspot-company-5521"
    assert company.data["attributes"] == {"industry": "computer_software"}
    assert contact.data["identity"] == digested(identity_key, email="ann.lee@example.com")
    assert contact.data["attributes"] == {}


@pytest.mark.parametrize("tamper", ["signature", "stale", "url", "missing"])
async def test_hubspot_refuses_bad_signatures_and_old_timestamps(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, tamper: str
) -> None:
    body = (FIXTURES / "hubspot_contacts.json").read_bytes()
    url = "http://ingest/v1/webhooks/hubspot"
    headers = hubspot_headers(ingest_settings, url, body)
    if tamper == "signature":
        headers["X-HubSpot-Signature-v3"] = base64.b64encode(b"x" * 32).decode()
    elif tamper == "stale":
        headers = hubspot_headers(ingest_settings, url, body, at_ms=int((time.time() - 301) * 1000))
    elif tamper == "url":  # signed for another endpoint
        headers = hubspot_headers(ingest_settings, "http://elsewhere/hook", body)
    elif tamper == "missing":
        del headers["X-HubSpot-Request-Timestamp"]

    response = await ingest.post(url, content=body, headers=headers)

    assert response.status_code == 401
    expected = "stale-timestamp" if tamper == "stale" else "bad-signature"
    assert response.json()["type"].endswith(expected)
    assert await nothing_published(ingest_settings)


async def test_hubspot_signature_covers_the_public_url_behind_a_proxy(
    ingest_settings: IngestSettings,
) -> None:
    settings = ingest_settings.model_copy(update={"public_base_url": "https://hooks.example.com"})
    app = create_app(settings)
    body = (FIXTURES / "hubspot_contacts.json").read_bytes()
    signed_for = "https://hooks.example.com/v1/webhooks/hubspot"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://internal") as client:
            response = await client.post(
                "/v1/webhooks/hubspot",
                content=body,
                headers=hubspot_headers(settings, signed_for, body),
            )
    assert response.status_code == 202, response.text


async def test_salesforce_outbound_message_is_acknowledged_after_publishing(
    ingest_settings: IngestSettings, identity_key: bytes
) -> None:
    # The fixture's phone has no country code: this org's numbers are North American.
    settings = ingest_settings.model_copy(update={"default_phone_region": "US"})
    app = create_app(settings)
    body = (FIXTURES / "salesforce_account.xml").read_bytes()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.post(
                "/v1/webhooks/salesforce",
                content=body,
                headers={"content-type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            )
            again = await client.post(
                "/v1/webhooks/salesforce", content=body, headers={"content-type": "text/xml"}
            )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Ack>true</Ack>" in response.text
    assert "notificationsResponse" in response.text
    account, opportunity, *retried = await published(settings, 4)
    assert account.type == "crm.company.updated"
    assert account.subject == "salesforce-0015e00000ZkM3hAAF"
    assert account.data["attributes"] == {
        "salesforce_object": "Account",
        "industry": "manufacturing",
        "name": "Acme Corporation",
        "employee_count": 1200,
    }
    assert account.data["identity"] == digested(identity_key, phone="+14155550142")
    assert opportunity.type == "crm.deal.stage_changed"
    assert opportunity.subject == "salesforce-0015e00000ZkM3hAAF"
    assert opportunity.data["stage"] == "closed_won"
    # Salesforce retries with the same Notification ids: same event ids.
    assert [e.id for e in retried] == [account.id, opportunity.id]
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail"),
    [
        ((FIXTURES / "salesforce_xxe.xml").read_bytes(), "text/xml", 422, "DOCTYPE"),
        (b"<soapenv:Envelope><unclosed>", "text/xml", 422, "invalid XML"),
        (b"<a>not soap</a>", "text/xml", 422, "not a Salesforce outbound message"),
        (
            (FIXTURES / "salesforce_account.xml")
            .read_bytes()
            .replace(b"00D5e000000KQ2e", b"00D000000000001"),
            "text/xml",
            403,
            "OrganizationId",
        ),
        ((FIXTURES / "salesforce_account.xml").read_bytes(), "application/json", 415, "text/xml"),
    ],
)
async def test_salesforce_refuses_unsafe_malformed_or_foreign_messages(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    body: bytes,
    content_type: str,
    status: int,
    detail: str,
) -> None:
    response = await ingest.post(
        "/v1/webhooks/salesforce", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert "root:" not in response.text  # no /etc/passwd content, whatever happens
    assert await nothing_published(ingest_settings)


async def test_zoho_form_webhook_with_the_shared_token(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, identity_key: bytes
) -> None:
    body = (FIXTURES / "zoho_contact.form").read_bytes()
    token = secret(ingest_settings.zoho_webhook_token)
    response = await ingest.post(
        "/v1/webhooks/zoho",
        content=body,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "X-Zoho-Webhook-Token": token,
        },
    )
    assert response.status_code == 202, response.text
    [event] = await published(ingest_settings, 1)
    assert event.type == "crm.contact.updated"
    assert event.subject == "zoho-4876876000000624001"
    assert event.data["attributes"] == {
        "zoho_module": "Contacts",
        "industry": "retail",
        "employee_count": 45,
    }  # first and last name dropped at the edge
    assert event.data["identity"] == digested(
        identity_key, phone="+8613800138000", email="li.wei@example.cn"
    )

    # The token may also come as a parameter (Zoho's custom parameters); JSON works too.
    as_json = {"module": "Accounts", "id": "77", "modified_time": "2026-11-20T10:15:00+08:00",
               "token": token, "Industry": "Manufacturing"}  # fmt: skip
    response = await ingest.post("/v1/webhooks/zoho", json=as_json)
    assert response.status_code == 202, response.text
    _, account = await published(ingest_settings, 2)
    assert account.type == "crm.company.updated"
    assert account.data["attributes"]["industry"] == "manufacturing"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_zoho_refuses_a_missing_or_wrong_token(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, token: str | None
) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if token:
        headers["X-Zoho-Webhook-Token"] = token
    response = await ingest.post(
        "/v1/webhooks/zoho", content=(FIXTURES / "zoho_contact.form").read_bytes(), headers=headers
    )
    assert response.status_code == 401
    assert await nothing_published(ingest_settings)


async def test_unknown_and_disabled_sources_are_404(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    response = await ingest.post("/v1/webhooks/pipedrive", json=[])
    assert response.status_code == 404
    assert "unknown webhook source 'pipedrive'" in response.json()["detail"]

    app = create_app(ingest_settings.model_copy(update={"hubspot_client_secret": None}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
            response = await client.post("/v1/webhooks/hubspot", json=[])
    assert response.status_code == 404
    assert "INGEST_HUBSPOT_CLIENT_SECRET" in response.json()["detail"]
    assert await nothing_published(ingest_settings)
