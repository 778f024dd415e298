"""WeCom external-contact callbacks against the real broker, encrypted as WeCom does."""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from eventschemas.envelope import Envelope
from ingest.app import create_app
from ingest.config import IngestSettings
from tests.kafka_helpers import read_topic, topic_size
from tests.wecom_sample import FIXTURE_EXTERNAL_USER, SampleMsgCrypt, event_xml

pytestmark = pytest.mark.integration
CORP_ID = "ww-test-corp"
EXTERNAL = FIXTURE_EXTERNAL_USER


@pytest.fixture
def sample() -> SampleMsgCrypt:
    # Made up per test: 43 base64 characters of a random 32-byte key.
    aes_key = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    return SampleMsgCrypt(secrets.token_urlsafe(12), aes_key, CORP_ID)


@pytest.fixture
def settings(ingest_settings: IngestSettings, sample: SampleMsgCrypt) -> IngestSettings:
    aes_key = base64.b64encode(sample.key).decode().rstrip("=")
    return ingest_settings.model_copy(
        update={
            "wecom_token": SecretStr(sample.token),
            "wecom_encoding_aes_key": SecretStr(aes_key),
            "wecom_corp_id": CORP_ID,
        }
    )


@pytest.fixture
async def client(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as c:
            yield c


def signed(
    sample: SampleMsgCrypt,
    message: bytes,
    *,
    timestamp: int | None = None,
    receive_id: str | None = None,
) -> tuple[str, bytes]:
    return sample.signed_callback(message, timestamp=timestamp, receive_id=receive_id)


async def published(settings: IngestSettings, expected: int) -> list[Envelope]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.activity_topic, expected=expected
    )
    return [Envelope.from_bytes(r.value) for r in records]


async def test_url_verification_answers_the_decrypted_echostr(
    client: httpx.AsyncClient, sample: SampleMsgCrypt
) -> None:
    ts, nonce = str(int(time.time())), "1372623149"
    echostr, signature = sample.encrypt_msg(b"6436436544823648", nonce, ts)
    response = await client.get(
        f"/v1/webhooks/wecom?msg_signature={signature}&timestamp={ts}&nonce={nonce}"
        f"&echostr={quote(echostr)}"
    )
    assert response.status_code == 200, response.text
    assert response.text == "6436436544823648"

    tampered = await client.get(
        f"/v1/webhooks/wecom?msg_signature={'0' * 40}&timestamp={ts}&nonce={nonce}"
        f"&echostr={quote(echostr)}"
    )
    assert tampered.status_code == 401


@pytest.mark.parametrize(
    ("change_type", "change"),
    [
        ("add_external_contact", "added"),
        ("edit_external_contact", "edited"),
        ("del_external_contact", "removed_by_us"),
        ("del_follow_user", "removed_by_customer"),
    ],
)
async def test_external_contact_changes_become_relationship_events(
    client: httpx.AsyncClient,
    settings: IngestSettings,
    sample: SampleMsgCrypt,
    change_type: str,
    change: str,
) -> None:
    created = int(time.time()) - 3
    query, body = signed(sample, event_xml(change_type, created))

    started = time.monotonic()
    response = await client.post(
        f"/v1/webhooks/wecom?{query}", content=body, headers={"content-type": "text/xml"}
    )
    assert time.monotonic() - started < 5  # WeCom retries after 5 s
    assert response.status_code == 200, response.text
    assert response.text == "success"

    [event] = await published(settings, 1)
    assert (event.type, event.source, event.subject) == (
        "crm.relationship.changed",
        "crm/wecom",
        f"wecom-{EXTERNAL}",
    )
    assert event.data["channel"] == "wecom"
    assert event.data["owner_id"] == "zhangsan"
    assert event.data["change"] == change
    assert int(event.time.timestamp()) == created
    assert "teststate" not in event.to_bytes().decode()  # nothing but the signal travels

    # WeCom's retry of the same event (new nonce and signature) has the same event id.
    query, body = signed(sample, event_xml(change_type, created))
    again = await client.post(f"/v1/webhooks/wecom?{query}", content=body)
    assert again.status_code == 200
    first, second = await published(settings, 2)
    assert first.id == second.id


async def test_other_events_are_acknowledged_and_publish_nothing(
    client: httpx.AsyncClient, settings: IngestSettings, sample: SampleMsgCrypt
) -> None:
    query, body = signed(sample, event_xml("transfer_fail"))
    response = await client.post(f"/v1/webhooks/wecom?{query}", content=body)
    assert (response.status_code, response.text) == (200, "success")
    assert await topic_size(settings.kafka_bootstrap_servers, settings.activity_topic) == 0


async def test_tampered_old_or_foreign_callbacks_are_401_and_publish_nothing(
    client: httpx.AsyncClient, settings: IngestSettings, sample: SampleMsgCrypt
) -> None:
    message = event_xml("add_external_contact")

    query, body = signed(sample, message)
    digit = query[len("msg_signature=")]
    flipped = query.replace(f"={digit}", "=" + ("0" if digit != "0" else "1"), 1)
    tampered = await client.post(f"/v1/webhooks/wecom?{flipped}", content=body)
    assert tampered.status_code == 401
    assert tampered.json()["type"].endswith("bad-signature")

    # A valid signature over a ciphertext swapped in the body.
    _, other_body = signed(sample, message)
    swapped = await client.post(f"/v1/webhooks/wecom?{query}", content=other_body)
    assert swapped.status_code == 401

    query, body = signed(sample, message, receive_id="ww-someone-else")
    foreign = await client.post(f"/v1/webhooks/wecom?{query}", content=body)
    assert foreign.status_code == 401
    assert "corp id" in foreign.json()["detail"]

    query, body = signed(sample, message, timestamp=int(time.time()) - 3600)
    stale = await client.post(f"/v1/webhooks/wecom?{query}", content=body)
    assert stale.status_code == 401
    assert stale.json()["type"].endswith("stale-timestamp")

    assert await topic_size(settings.kafka_bootstrap_servers, settings.activity_topic) == 0


async def test_malformed_callbacks_name_the_problem(
    client: httpx.AsyncClient, sample: SampleMsgCrypt
) -> None:
    ts = str(int(time.time()))
    response = await client.post(
        f"/v1/webhooks/wecom?msg_signature=ab&timestamp={ts}&nonce=n", content=b"<xml><a>"
    )
    assert response.status_code == 422
    assert "invalid XML" in response.text

    missing = await client.post(
        f"/v1/webhooks/wecom?msg_signature=ab&timestamp={ts}&nonce=n", content=b"<xml></xml>"
    )
    assert missing.status_code == 422
    assert "Encrypt" in missing.text

    no_signature = await client.post("/v1/webhooks/wecom", content=b"<xml></xml>")
    assert no_signature.status_code in (400, 422)
    assert "msg_signature" in no_signature.text


async def test_wecom_is_404_when_not_configured(ingest: httpx.AsyncClient) -> None:
    response = await ingest.post(
        "/v1/webhooks/wecom?msg_signature=a&timestamp=1&nonce=n", content=b"<xml/>"
    )
    assert response.status_code == 404
    assert "INGEST_WECOM_TOKEN" in response.json()["detail"]
