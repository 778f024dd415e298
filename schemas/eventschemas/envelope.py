"""The CloudEvents 1.0 envelope (JSON event format) every activity event travels in.

On Kafka it travels in the *structured* content mode of the CloudEvents Kafka
protocol binding: the record value is the whole envelope as JSON and the
`content-type` header says so. Routing headers use names without the `ce_`
prefix, which the binding reserves for binary mode.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from eventschemas.limits import IdText, Instant

# Namespace for deterministic event ids: uuid5(EVENT_ID_NAMESPACE, source|type|natural id|rev).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4b8e-9a53-2f4c1d7e9b10")

# The `content-type` header of a structured-mode record (CloudEvents Kafka binding, 3.2).
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
STRUCTURED_HEADER = ("content-type", STRUCTURED_CONTENT_TYPE.encode())
# Copies of `type` and `id` for routing and filtering without parsing the value.
EVENT_TYPE_HEADER = "event_type"
EVENT_ID_HEADER = "event_id"


class Envelope(BaseModel):
    """A CloudEvents 1.0 event: attributes plus the type-specific `data`."""

    # Every attribute is on the wire, defaults included, so the schema requires them all.
    model_config = ConfigDict(
        frozen=True, extra="ignore", json_schema_serialization_defaults_required=True
    )

    specversion: Literal["1.0"] = "1.0"
    id: IdText = Field(min_length=1, max_length=200)
    source: IdText = Field(min_length=1, max_length=200)
    type: IdText = Field(min_length=1, max_length=100)
    subject: IdText = Field(min_length=1, max_length=200, description="The customer id.")
    time: Instant = Field(description="When the fact happened in the source system.")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: IdText = Field(max_length=200)
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        """Serialise to the JSON bytes that go on the wire."""
        return orjson.dumps(self.model_dump(mode="json"))

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """The headers of this envelope's structured-mode Kafka record."""
        return [
            STRUCTURED_HEADER,
            (EVENT_TYPE_HEADER, self.type.encode()),
            (EVENT_ID_HEADER, self.id.encode()),
        ]

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse wire bytes; raises ValueError (pydantic's ValidationError) when malformed."""
        return cls.model_validate_json(raw)


def deterministic_event_id(source: str, event_type: str, natural_id: str, revision: int) -> str:
    """Return the same id for the same source fact, so retries and re-uploads dedupe."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}|{event_type}|{natural_id}|{revision}"))


def dataschema_for(event_type: str, version: int) -> str:
    """Name the JSON Schema of one event type version (files under schemas/json/)."""
    return f"urn:customer-classifier:schema:{event_type}:v{version}"
