"""Kafka record -> (envelope, event); anything undecodable is a poison message.

Both content modes of the CloudEvents Kafka protocol binding are accepted:
structured (`content-type: application/cloudevents+json`, the envelope is the
value; what we produce) and binary (`ce_*` headers carry the attributes, the
value is the data; the default of the CloudEvents SDKs). A record with
neither (our producers before the binding was followed) is read as structured.
Both end up in the same Envelope model and the same validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from eventschemas.envelope import Envelope
from eventschemas.events import ActivityEvent, UnknownEventType, parse_event


class PoisonMessage(Exception):
    """The record can never be processed; it goes to the DLQ with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _first_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
    )


Headers = Sequence[tuple[str, bytes]]

_CE_PREFIX = "ce_"


def _media_type(headers: Headers) -> str | None:
    for name, raw in headers:
        if name.lower() == "content-type":
            return raw.decode("utf-8", "replace").split(";")[0].strip().lower()
    return None


def is_binary_mode(headers: Headers) -> bool:
    """Whether the record is a binary-mode CloudEvent (the binding's detection rule)."""
    media_type = _media_type(headers)
    if media_type is not None and media_type.startswith("application/cloudevents"):
        return False
    return any(name.lower() == "ce_specversion" for name, _ in headers)


def binary_envelope_fields(headers: Headers, value: bytes) -> dict[str, Any]:
    """The envelope attributes and `data` of a binary-mode record, as the structured JSON has them.

    `ce_<attribute>` headers carry the attributes (UTF-8 strings), `content-type`
    is `datacontenttype`, the value is the data (JSON). The result is validated
    by the same Envelope model as a structured record's value.
    """
    fields: dict[str, Any] = {}
    for name, raw in headers:
        lowered = name.lower()
        if lowered.startswith(_CE_PREFIX) or lowered == "content-type":
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PoisonMessage("invalid_envelope", f"header {name}: not UTF-8") from exc
            key = "datacontenttype" if lowered == "content-type" else lowered[len(_CE_PREFIX) :]
            if key == "datacontenttype":
                text = text.split(";")[0].strip().lower()
            fields.setdefault(key, text)
    try:
        fields["data"] = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage("invalid_data", f"the value is not JSON: {exc}") from exc
    return fields


def decode(value: bytes | None, headers: Headers = ()) -> tuple[Envelope, ActivityEvent]:
    """Parse and validate one record (structured or binary CloudEvents content mode)."""
    if not value:
        raise PoisonMessage("empty", "record has no value")
    try:
        if is_binary_mode(headers):
            envelope = Envelope.model_validate(binary_envelope_fields(headers, value))
        else:
            envelope = Envelope.from_bytes(value)
    except ValidationError as exc:
        raise PoisonMessage("invalid_envelope", _first_errors(exc)) from exc
    try:
        return envelope, parse_event(envelope)
    except UnknownEventType as exc:
        raise PoisonMessage("unknown_type", str(exc)) from exc
    except ValidationError as exc:
        raise PoisonMessage("invalid_data", _first_errors(exc)) from exc
    except ValueError as exc:
        raise PoisonMessage("invalid_data", str(exc)) from exc
