"""`wecom`: WeCom (企业微信) external-contact callbacks, in WeCom's callback protocol.

    GET  /v1/webhooks/wecom?msg_signature=&timestamp=&nonce=&echostr=  (URL verification)
    POST /v1/webhooks/wecom?msg_signature=&timestamp=&nonce=
         <xml><ToUserName>corp id</ToUserName><Encrypt>ciphertext</Encrypt></xml>

`msg_signature` is the SHA-1 of the sorted token, timestamp, nonce and
ciphertext. The ciphertext is AES-256-CBC under the EncodingAESKey (IV = its
first 16 bytes, PKCS#7 padding to 32-byte blocks) of
`random(16) + len(msg) as 4 bytes big-endian + msg + corp id`; the corp id at
the end must be ours. The AES comes from `cryptography`; the protocol around
it is the few lines below.

`change_external_contact` events become `crm.relationship.changed` for the
customer `wecom-<ExternalUserID>`, with the salesperson's UserID as owner:

    add_external_contact   -> added                (a salesperson added the customer)
    edit_external_contact  -> edited               (a touch point)
    del_external_contact   -> removed_by_us        (the salesperson deleted the customer)
    del_follow_user        -> removed_by_customer  (the customer deleted the salesperson)

Everything else is acknowledged and dropped. The answer is the plain
`success` WeCom expects, once the broker acknowledged (WeCom retries after 5 s).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from fastapi import APIRouter, Query, Request, Response

from eventschemas.events import CrmRelationshipChanged, RelationshipChange
from eventschemas.problems import Problem
from ingest.config import IngestSettings
from ingest.deps import PublisherDep, SettingsDep
from ingest.errors import IngestError, InvalidInput
from ingest.orders.service import check_not_future
from ingest.suppressions import leave_out
from ingest.webhooks.auth import StaleRequest, Unauthenticated

router = APIRouter()

CHANGES = {
    "add_external_contact": RelationshipChange.ADDED,
    "edit_external_contact": RelationshipChange.EDITED,
    "del_external_contact": RelationshipChange.REMOVED_BY_US,
    "del_follow_user": RelationshipChange.REMOVED_BY_CUSTOMER,
}


class WeComDisabled(IngestError):
    status = 404
    slug = "unknown-source"
    title = "No such webhook source"


@dataclass(frozen=True)
class WeComKeys:
    token: str
    aes_key: bytes
    corp_id: str


def keys(settings: IngestSettings) -> WeComKeys:
    """The configured token, AES key and corp id; 404 when WeCom is not set up here."""
    if not (settings.wecom_token and settings.wecom_encoding_aes_key and settings.wecom_corp_id):
        raise WeComDisabled(
            "webhook source 'wecom' is not enabled here (set INGEST_WECOM_TOKEN, "
            "INGEST_WECOM_ENCODING_AES_KEY and INGEST_WECOM_CORP_ID)"
        )
    encoded = settings.wecom_encoding_aes_key.get_secret_value()
    token = settings.wecom_token.get_secret_value()
    return WeComKeys(token, base64.b64decode(encoded + "="), settings.wecom_corp_id)


def signature(token: str, timestamp: str, nonce: str, ciphertext: str) -> str:
    """WeCom's msg_signature: hex SHA-1 of the four values sorted and concatenated."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, ciphertext])).encode()).hexdigest()


def verify(
    wecom: WeComKeys,
    *,
    msg_signature: str,
    timestamp: str,
    nonce: str,
    ciphertext: str,
    max_age_seconds: int,
) -> None:
    """A fresh timestamp and a signature over it, compared in constant time."""
    try:
        ts = int(timestamp)
    except ValueError as exc:
        raise Unauthenticated("timestamp is not Unix seconds") from exc
    if abs(time.time() - ts) > max_age_seconds:
        raise StaleRequest(
            f"timestamp is {int(time.time() - ts)} s from now; at most {max_age_seconds} s "
            "is accepted"
        )
    expected = signature(wecom.token, timestamp, nonce, ciphertext)
    if not hmac.compare_digest(expected.encode(), msg_signature.strip().lower().encode()):
        raise Unauthenticated("msg_signature mismatch")


def decrypt(wecom: WeComKeys, ciphertext: str) -> bytes:
    """The message inside `ciphertext`, after checking it names our corp id."""
    try:
        raw = base64.b64decode(ciphertext, validate=True)
        decryptor = Cipher(algorithms.AES(wecom.aes_key), modes.CBC(wecom.aes_key[:16])).decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(256).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        (length,) = struct.unpack(">I", plain[16:20])
    except (binascii.Error, ValueError, struct.error) as exc:
        raise Unauthenticated("the message does not decrypt with the EncodingAESKey") from exc
    message, receiver = plain[20 : 20 + length], plain[20 + length :]
    if len(message) != length or not hmac.compare_digest(receiver, wecom.corp_id.encode()):
        raise Unauthenticated("the message is not addressed to the configured corp id")
    return message


def _xml_fields(body: bytes, what: str) -> dict[str, str]:
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidInput(what, "XML with a DOCTYPE or entities is refused") from exc
    except ParseError as exc:
        raise InvalidInput(what, f"invalid XML: {exc}") from exc
    return {child.tag: (child.text or "").strip() for child in root}


def relationship_event(
    settings: IngestSettings, corp_id: str, fields: dict[str, str]
) -> CrmRelationshipChanged | None:
    """The event one decrypted callback carries, or None when it changes no relationship."""
    if fields.get("Event") != "change_external_contact":
        return None
    change = CHANGES.get(fields.get("ChangeType", ""))
    user, external = fields.get("UserID"), fields.get("ExternalUserID")
    if change is None or not user or not external:
        return None
    try:
        created = datetime.fromtimestamp(int(fields.get("CreateTime", "")), UTC)
    except ValueError as exc:
        raise InvalidInput("CreateTime", "not Unix seconds") from exc
    check_not_future(settings, "CreateTime", created)
    natural = f"{corp_id}:{fields['ChangeType']}:{user}:{external}:{fields['CreateTime']}"
    if len(natural) > 128:
        natural = "sha256:" + hashlib.sha256(natural.encode()).hexdigest()
    return CrmRelationshipChanged(
        customer_id=f"wecom-{external}",
        channel="wecom",
        owner_id=user,
        change=change,
        changed_at=created,
        source_event_id=natural,
    )


Param = Annotated[str, Query(min_length=1, max_length=512)]
RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/plain": {}}},
    401: {"model": Problem, "description": "Bad signature, stale timestamp or other corp id."},
    404: {"model": Problem, "description": "WeCom is not configured here."},
    422: {"model": Problem, "description": "Malformed callback; the body names the field."},
    503: {"model": Problem, "description": "Broker unavailable; WeCom retries."},
}


@router.get("/wecom", response_class=Response, responses=RESPONSES)
async def verify_url(
    msg_signature: Param, timestamp: Param, nonce: Param, echostr: Param, settings: SettingsDep
) -> Response:
    """URL verification: answer the decrypted `echostr` in plain text."""
    wecom = keys(settings)
    verify(
        wecom,
        msg_signature=msg_signature,
        timestamp=timestamp,
        nonce=nonce,
        ciphertext=echostr,
        max_age_seconds=settings.webhook_max_age_seconds,
    )
    return Response(decrypt(wecom, echostr), media_type="text/plain")


@router.post("/wecom", response_class=Response, responses=RESPONSES)
async def receive_callback(
    msg_signature: Param,
    timestamp: Param,
    nonce: Param,
    request: Request,
    settings: SettingsDep,
    publisher: PublisherDep,
) -> Response:
    """An encrypted event: verify, decrypt, publish what changes a relationship, say `success`."""
    wecom = keys(settings)
    body = await request.body()
    ciphertext = _xml_fields(body, "body").get("Encrypt")
    if not ciphertext:
        raise InvalidInput("Encrypt", "missing: not a WeCom callback")
    verify(
        wecom,
        msg_signature=msg_signature,
        timestamp=timestamp,
        nonce=nonce,
        ciphertext=ciphertext,
        max_age_seconds=settings.webhook_max_age_seconds,
    )
    fields = _xml_fields(decrypt(wecom, ciphertext), "Encrypt")
    event = relationship_event(settings, wecom.corp_id, fields)
    if event is not None:
        kept, _ = await leave_out(request.app.state.suppressions, [event.to_envelope("crm/wecom")])
        await publisher.publish(kept)
    return Response("success", media_type="text/plain")
