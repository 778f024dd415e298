"""Phone numbers and e-mail addresses never leave ingest in clear, whatever the door:
every intake path, against the real broker, puts only keyed digests on the topic."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from eventschemas.events import identity_digest
from ingest.config import IngestSettings
from tests.integration.test_ingest_webhooks import generic_headers, hubspot_headers
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

# Two spellings of one number, and an e-mail as people type it.
PHONES = ("+86 138 0013 8000", "13800138000")
E164 = "+8613800138000"
EMAIL = " Zhang.Li@Example.CN "
NORMALISED_EMAIL = "zhang.li@example.cn"
# Every form either could take on the wire: raw, normalised, digits, local part, domain.
CLEAR = ("138 0013 8000", "13800138000", "8613800138000", "zhang.li", "example.cn")

AT = "2026-11-20T10:00:00+08:00"


def order(n: int, phone: str) -> dict[str, Any]:
    return {"order_id": f"SO-{n}", "amount": "10", "currency": "CNY", "placed_at": AT,
            "phone": phone, "email": EMAIL}  # fmt: skip


def call(n: int, phone: str) -> dict[str, Any]:
    return {"call_id": f"CALL-{n}", "started_at": AT, "outcome": "interested",
            "phone": phone, "email": EMAIL}  # fmt: skip


def csv(rows: list[dict[str, Any]]) -> dict[str, tuple[str, bytes, str]]:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[c]) for c in header) for r in rows]
    return {"file": ("rows.csv", ("\n".join(lines) + "\n").encode(), "text/csv")}


async def send_every_path(ingest: httpx.AsyncClient, settings: IngestSettings) -> int:
    """One request per intake path, each carrying a phone and an e-mail; the events made."""
    made = 0

    async def accepted(response: httpx.Response, events: int) -> None:
        nonlocal made
        assert response.status_code in (200, 202), response.text
        for clear in CLEAR:
            assert clear not in response.text.lower(), (response.request.url, clear)
        made += events

    p1, p2 = PHONES
    await accepted(await ingest.post("/v1/orders", json=order(1, p1)), 1)
    await accepted(await ingest.post("/v1/orders:batch", json=[order(2, p2), order(3, p1)]), 2)
    await accepted(await ingest.post("/v1/calls", json=call(1, p2)), 1)
    await accepted(await ingest.post("/v1/calls:batch", json=[call(2, p1), call(3, p2)]), 2)
    await accepted(await ingest.post("/v1/imports/orders", files=csv([order(4, p1)])), 1)
    await accepted(await ingest.post("/v1/imports/calls", files=csv([call(4, p2)])), 1)

    generic = orjson.dumps({"events": [
        {"type": "contact.updated", "id": "g-1", "customer_id": "g-cust", "occurred_at": AT,
         "phone": p1, "email": EMAIL},
        {"type": "deal.stage_changed", "id": "g-2", "deal_id": "D-1", "stage": "won",
         "occurred_at": AT, "phone": p2, "email": EMAIL},
    ]})  # fmt: skip
    headers = generic_headers(settings, generic)
    await accepted(await ingest.post("/v1/webhooks/generic", content=generic, headers=headers), 2)

    url = "http://ingest/v1/webhooks/hubspot"
    hubspot = orjson.dumps([
        {"eventId": 9001 + i, "portalId": 33, "occurredAt": 1_700_000_000_000 + i,
         "subscriptionType": "contact.propertyChange", "objectId": 4242,
         "propertyName": name, "propertyValue": value}
        for i, (name, value) in enumerate([("phone", p1), ("email", EMAIL)])
    ])  # fmt: skip
    headers = hubspot_headers(settings, url, hubspot)
    await accepted(await ingest.post(url, content=hubspot, headers=headers), 2)

    salesforce = (
        (FIXTURES / "salesforce_account.xml")
        .read_bytes()
        .replace(
            b"<sf:Phone>(415) 555-0142</sf:Phone>",
            f"<sf:Phone>{p2}</sf:Phone><sf:Email>{EMAIL.strip()}</sf:Email>".encode(),
        )
    )
    await accepted(
        await ingest.post(
            "/v1/webhooks/salesforce", content=salesforce, headers={"content-type": "text/xml"}
        ),
        2,  # the account and its opportunity
    )

    zoho = urlencode({"module": "Contacts", "id": "z-1", "modified_time": AT,
                      "Email": EMAIL, "Mobile": p1})  # fmt: skip
    token = settings.zoho_webhook_token
    assert token is not None
    await accepted(
        await ingest.post(
            "/v1/webhooks/zoho",
            content=zoho,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "X-Zoho-Webhook-Token": token.get_secret_value(),
            },
        ),
        1,
    )
    return made


async def test_no_intake_path_puts_a_phone_or_e_mail_in_clear_on_the_topic(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    identity_key: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    made = await send_every_path(ingest, ingest_settings)

    records = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=made
    )
    assert len(records) == made == 15
    wire = b"".join(
        r.value + (r.key or b"") + b"".join(k.encode() + v for k, v in r.headers or ())
        for r in records
    ).lower()
    for clear in CLEAR:
        assert clear.encode() not in wire, clear
    logged = "\n".join(r.getMessage() for r in caplog.records).lower()
    for clear in CLEAR:
        assert clear not in logged, clear

    # Both spellings of the number give one digest; the e-mail one too, in every event.
    phone = identity_digest(identity_key, "phone", E164)
    email = identity_digest(identity_key, "email", NORMALISED_EMAIL)
    identities = [Envelope.from_bytes(r.value).data.get("identity") for r in records]
    carried = [i for i in identities if i]
    assert len(carried) == made - 1  # all but the Salesforce opportunity
    assert {i["phone_hash"] for i in carried} - {None} == {phone}
    assert {i["email_hash"] for i in carried} - {None} == {email}
    assert all((i["phone"], i["email"]) == (None, None) for i in carried)
    # Customers derived from the e-mail (no customer_id given) are one customer.
    derived = {Envelope.from_bytes(r.value).subject for r in records} - {
        "g-cust", "hubspot-contact-4242", "zoho-z-1", "salesforce-0015e00000ZkM3hAAF"
    }  # fmt: skip
    assert derived == {f"id-e-{email[:24]}"}


async def test_both_spellings_of_a_phone_derive_one_customer_from_its_digest(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, identity_key: bytes
) -> None:
    answers = [
        await ingest.post("/v1/calls", json={**call(10 + n, phone), "email": None})
        for n, phone in enumerate(PHONES)
    ]
    assert [a.status_code for a in answers] == [202, 202]
    records = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=2
    )
    events = [Envelope.from_bytes(r.value) for r in records]
    digest = identity_digest(identity_key, "phone", E164)
    assert [e.data["identity"]["phone_hash"] for e in events] == [digest, digest]
    assert {e.subject for e in events} == {f"id-p-{digest[:24]}"}
