"""One customer, however they reach us, across real processes: ingest -> Kafka ->
worker -> PostgreSQL -> API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from classifier.config import ClassifierSettings
from tests.e2e.stack import running_stack

pytestmark = pytest.mark.e2e
GENERIC_SECRET = secrets.token_hex(16)  # made up per run, as every test credential
HUBSPOT_SECRET = secrets.token_hex(16)


@pytest.fixture
def stack(
    classifier_settings: ClassifierSettings, sessions: object, tmp_path: Path, root: Path
) -> Iterator[dict[str, str]]:
    with running_stack(
        classifier_settings,
        tmp_path,
        root,
        INGEST_GENERIC_WEBHOOK_SECRET=GENERIC_SECRET,
        INGEST_HUBSPOT_CLIENT_SECRET=HUBSPOT_SECRET,
    ) as urls:
        yield urls


def generic(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(GENERIC_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return {
        "content-type": "application/json",
        "X-Webhook-Timestamp": stamp,
        "X-Webhook-Signature": f"v1={digest.hexdigest()}",
    }


def hubspot(url: str, body: bytes) -> dict[str, str]:
    """Signed as HubSpot documents v3: base64(HMAC-SHA256(secret, method+uri+body+ts))."""
    stamp = str(int(time.time() * 1000))
    digest = hmac.new(
        HUBSPOT_SECRET.encode(), b"POST" + url.encode() + body + stamp.encode(), hashlib.sha256
    ).digest()
    return {
        "content-type": "application/json",
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
    }


async def until(
    client: httpx.AsyncClient,
    stack: dict[str, str],
    customer_id: str,
    ready: Callable[[dict[str, Any]], bool],
    within: float = 30,
) -> dict[str, Any]:
    """The customer's lookup once `ready` holds for it."""
    headers = {"Authorization": f"Bearer {stack['key']}"}
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = await client.get(f"{stack['api']}/v1/customers/{customer_id}", headers=headers)
        if answer.status_code == 200:
            body = answer.json()
            if ready(body):
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{customer_id} never got there; last answer {body}")


def stage(customer: dict[str, Any]) -> str:
    return str(customer["classes"]["lifecycle_stage"]["class"])


async def test_calls_with_only_an_email_or_a_phone_join_the_known_customer(
    stack: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    known = f"crm-{tag}"
    digits = f"{int(tag, 16) % 10_000_000:07d}"
    now = datetime.now(UTC)
    contact = {
        "events": [
            {
                "type": "contact.updated",
                "id": f"evt-{tag}",
                "customer_id": known,
                "occurred_at": (now - timedelta(days=3)).isoformat(),
                "email": f"Wang.{tag}@Example.cn",
                "phone": f"138{digits[:4]}{digits[4:]}0",
            }
        ]
    }
    async with httpx.AsyncClient(timeout=10) as client:
        body = orjson.dumps(contact)
        sent = await client.post(
            f"{stack['ingest']}/v1/webhooks/generic", content=body, headers=generic(body)
        )
        assert sent.status_code == 202, sent.text
        assert stage(await until(client, stack, known, lambda c: bool(c["classes"]))) == (
            "potential"
        )

        # A telesales call that knows only the e-mail (another spelling of it).
        by_email = await client.post(
            f"{stack['ingest']}/v1/calls",
            json={
                "call_id": f"call-1-{tag}",
                "email": f"wang.{tag}@example.CN",
                "started_at": (now - timedelta(days=2)).isoformat(),
                "outcome": "interested",
            },
            headers={"Authorization": f"Bearer {stack['calls_key']}"},
        )
        assert by_email.status_code == 202, by_email.text
        derived = by_email.json()["customer_ids"][0]
        assert derived.startswith("id-e-")
        customer = await until(client, stack, known, lambda c: c["aggregates"]["call_count"] == 1)
        assert stage(customer) == "initial_intent"  # the funnel moved on the known customer
        alias = await until(client, stack, derived, lambda c: c["merged_into"] == known)
        assert alias["id"] == known

        # And one that knows only the phone, written the other way.
        by_phone = await client.post(
            f"{stack['ingest']}/v1/calls",
            json={
                "call_id": f"call-2-{tag}",
                "phone": f"+86 138 {digits[:4]} {digits[4:]}0",
                "started_at": (now - timedelta(days=1)).isoformat(),
                "outcome": "interested",
                "intent": "high",
            },
            headers={"Authorization": f"Bearer {stack['calls_key']}"},
        )
        assert by_phone.status_code == 202, by_phone.text
        customer = await until(client, stack, known, lambda c: c["aggregates"]["call_count"] == 2)
        assert stage(customer) == "deep_intent"


async def test_a_signed_hubspot_merge_joins_two_customers_with_orders(
    stack: dict[str, str],
) -> None:
    primary = 900_000 + uuid.uuid4().int % 90_000
    merged = primary + 1
    survivor, absorbed = f"hubspot-contact-{primary}", f"hubspot-contact-{merged}"
    placed = datetime.now(UTC) - timedelta(days=10)
    intake = {"Authorization": f"Bearer {stack['intake_key']}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for n, (cid, amount) in enumerate([(survivor, 800), (absorbed, 6000), (absorbed, 6000)]):
            order = {
                "order_id": f"hs-{primary}-{n}",
                "customer_id": cid,
                "amount": amount,
                "currency": "USD",
                "placed_at": (placed + timedelta(hours=n)).isoformat(),
            }
            assert (
                await client.post(f"{stack['ingest']}/v1/orders", json=order, headers=intake)
            ).status_code == 202
        before = await until(client, stack, survivor, lambda c: c["aggregates"]["order_count"] == 1)
        await until(client, stack, absorbed, lambda c: c["aggregates"]["order_count"] == 2)
        assert before["classes"]["value"]["class"] == "low"

        url = f"{stack['ingest']}/v1/webhooks/hubspot"
        body = orjson.dumps(
            [
                {
                    "eventId": primary,
                    "subscriptionId": 1,
                    "portalId": 33,
                    "occurredAt": int(time.time() * 1000) - 1000,
                    "subscriptionType": "contact.merge",
                    "objectId": primary,
                    "primaryObjectId": primary,
                    "mergedObjectIds": [merged],
                    "newObjectId": primary,
                    "attemptNumber": 0,
                }
            ]
        )
        sent = await client.post(url, content=body, headers=hubspot(url, body))
        assert sent.status_code == 202, sent.text

        after = await until(client, stack, survivor, lambda c: c["aggregates"]["order_count"] == 3)
        assert after["classes"]["value"]["class"] == "high"  # both histories: 12,800
        answer = await until(client, stack, absorbed, lambda c: c["merged_into"] == survivor)
        assert answer["id"] == survivor
        history = await client.get(
            f"{stack['api']}/v1/customers/{absorbed}/history",
            headers={"Authorization": f"Bearer {stack['key']}"},
        )
        assert history.status_code == 200
        periods = history.json()["periods"]
        assert periods  # the absorbed customer's history stays readable
        assert all(p["valid_to"] is not None for p in periods)  # and it ended
