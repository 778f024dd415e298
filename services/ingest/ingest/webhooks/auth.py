"""Webhook authentication, one scheme per CRM; every comparison is constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from ingest.errors import IngestError


class Unauthenticated(IngestError):
    status = 401
    slug = "bad-signature"
    title = "The webhook's signature or token does not verify"


class StaleRequest(IngestError):
    status = 401
    slug = "stale-timestamp"
    title = "The webhook's timestamp is outside the accepted window"


class ForbiddenSender(IngestError):
    status = 403
    slug = "forbidden-sender"
    title = "The sender is not one this service is configured to accept"


def _check_window(timestamp_seconds: float, max_age_seconds: int, now: float) -> None:
    if abs(now - timestamp_seconds) > max_age_seconds:
        raise StaleRequest(
            f"timestamp is {int(now - timestamp_seconds)} s from now; "
            f"at most {max_age_seconds} s is accepted"
        )


GENERIC_TIMESTAMP_HEADER = "X-Webhook-Timestamp"
GENERIC_SIGNATURE_HEADER = "X-Webhook-Signature"


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 over `<timestamp>.<body>` (timestamp in Unix seconds)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_generic(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    max_age_seconds: int,
    now: float | None = None,
) -> None:
    """Verify our own scheme: a fresh timestamp and an HMAC over timestamp and body."""
    if not timestamp or not signature:
        raise Unauthenticated(
            f"send {GENERIC_TIMESTAMP_HEADER} and {GENERIC_SIGNATURE_HEADER} headers"
        )
    try:
        ts = int(timestamp)
    except ValueError as exc:
        raise Unauthenticated(f"{GENERIC_TIMESTAMP_HEADER} is not Unix seconds") from exc
    _check_window(ts, max_age_seconds, time.time() if now is None else now)
    expected = generic_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise Unauthenticated("signature mismatch")


# HubSpot decodes these percent-escapes in the URI before signing (v3 scheme).
_HUBSPOT_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def hubspot_uri(uri: str) -> str:
    """The request URI as HubSpot signs it: certain percent-escapes decoded."""
    for escaped, char in _HUBSPOT_DECODE.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def hubspot_signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """Base64 HMAC-SHA256 of method + URI + body + timestamp, keyed with the app secret."""
    message = method.encode() + hubspot_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify_hubspot(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    max_age_seconds: int,
    now: float | None = None,
) -> None:
    """HubSpot's v3 scheme: X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp (ms)."""
    if not timestamp or not signature:
        raise Unauthenticated("send X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp headers")
    try:
        ts_ms = int(timestamp)
    except ValueError as exc:
        raise Unauthenticated("X-HubSpot-Request-Timestamp is not Unix milliseconds") from exc
    _check_window(ts_ms / 1000, max_age_seconds, time.time() if now is None else now)
    expected = hubspot_signature_v3(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise Unauthenticated("signature mismatch")


def verify_token(expected: str, given: str | None, name: str) -> None:
    """A shared token (Zoho): present and equal, compared in constant time."""
    if not given:
        raise Unauthenticated(f"send the shared token in {name}")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise Unauthenticated("token mismatch")
