"""`python -m eventschemas.generate`: write the JSON Schemas and the AsyncAPI document.

The files under schemas/json/ and schemas/asyncapi.yaml are generated from
the pydantic models and checked in; tests/unit/test_contracts.py fails when
they drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from eventschemas.changes import (
    CHANGE_DATASCHEMA,
    CHANGE_EVENT_TYPE,
    CHANGE_ID_HEADER,
    CHANGE_SOURCE,
    ERASED_DATASCHEMA,
    ERASED_EVENT_TYPE,
    MERGED_DATASCHEMA,
    MERGED_EVENT_TYPE,
    ClassChanged,
    CustomerErased,
    CustomerMerged,
)
from eventschemas.envelope import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    STRUCTURED_CONTENT_TYPE,
    Envelope,
    dataschema_for,
)
from eventschemas.events import EVENT_TYPES
from eventschemas.topics import ACTIVITY_DLQ_TOPIC, ACTIVITY_TOPIC, CLASS_CHANGES_TOPIC

SCHEMAS_DIR = Path(__file__).resolve().parents[1]


def _schema(model: Any, title: str, schema_id: str) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        **schema,
        "title": title,
    }


def json_schemas() -> dict[str, dict[str, Any]]:
    """Relative path -> JSON Schema, for the envelope, every event type and the change record."""
    files = {
        "json/envelope.schema.json": _schema(
            Envelope, "CloudEvents envelope", "urn:customer-classifier:schema:envelope:v1"
        ),
        "json/class-changed.v1.schema.json": _schema(
            ClassChanged, "Class changed", CHANGE_DATASCHEMA
        ),
        "json/customer-merged.v1.schema.json": _schema(
            CustomerMerged, "Customer merged", MERGED_DATASCHEMA
        ),
        "json/customer-erased.v1.schema.json": _schema(
            CustomerErased, "Customer erased", ERASED_DATASCHEMA
        ),
    }
    for event_type, model in sorted(EVENT_TYPES.items()):
        files[f"json/events/{event_type}.v{model.VERSION}.schema.json"] = _schema(
            model, event_type, dataschema_for(event_type, model.VERSION)
        )
    return files


ENVELOPE_REF = "./json/envelope.schema.json"
KAFKA_BINDING_VERSION = "0.5.0"
STRUCTURED_MODE = (
    "Structured content mode of the CloudEvents 1.0 Kafka protocol binding: the value is "
    f"the whole event as JSON and the `content-type` header is `{STRUCTURED_CONTENT_TYPE}`. "
    "Routing headers do not start with `ce_` (the binding reserves that prefix for binary "
    "mode)."
)


def _key(description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": description},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _cloudevent_payload(
    event_type: str, dataschema: str, data_ref: str, **attributes: Any
) -> dict[str, Any]:
    """The envelope schema, narrowed to one type whose `data` is that type's schema."""
    return {
        "allOf": [
            {"$ref": ENVELOPE_REF},
            {
                "type": "object",
                "properties": {
                    **attributes,
                    "type": {"const": event_type},
                    "dataschema": {"const": dataschema},
                    "data": {"$ref": data_ref},
                },
            },
        ]
    }


def _structured_headers(**routing: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["content-type", *routing],
        "properties": {
            "content-type": {"type": "string", "const": STRUCTURED_CONTENT_TYPE},
            **routing,
        },
    }


def _activity_message(event_type: str, model: Any) -> dict[str, Any]:
    dataschema = dataschema_for(event_type, model.VERSION)
    return {
        "name": event_type,
        "title": event_type,
        "summary": (model.__doc__ or event_type).strip().splitlines()[0],
        "contentType": "application/cloudevents+json",
        "headers": _structured_headers(
            **{
                EVENT_TYPE_HEADER: {"type": "string", "const": event_type},
                EVENT_ID_HEADER: {"type": "string", "description": "The event's `id`."},
            }
        ),
        "payload": _cloudevent_payload(
            event_type,
            dataschema,
            f"./json/events/{event_type}.v{model.VERSION}.schema.json",
        ),
        "bindings": _key(
            "The customer id (the event's `subject`): one customer's events "
            "stay in order on one partition."
        ),
    }


def _class_changed_message() -> dict[str, Any]:
    return {
        "name": CHANGE_EVENT_TYPE,
        "title": CHANGE_EVENT_TYPE,
        "summary": "A customer moved from one class to another in one dimension.",
        "contentType": "application/cloudevents+json",
        "headers": _structured_headers(
            **{CHANGE_ID_HEADER: {"type": "string", "description": "The change id (`id`)."}}
        ),
        "payload": _cloudevent_payload(
            CHANGE_EVENT_TYPE,
            CHANGE_DATASCHEMA,
            "./json/class-changed.v1.schema.json",
            source={"const": CHANGE_SOURCE},
        ),
        "bindings": _key("The customer id (the event's `subject`)."),
    }


def _customer_merged_message() -> dict[str, Any]:
    return {
        "name": MERGED_EVENT_TYPE,
        "title": MERGED_EVENT_TYPE,
        "summary": "A merge made one customer of two: the absorbed ids lead to the subject.",
        "description": "Beside the class changes it causes (reason `merge`), keyed by the "
        "survivor; the absorbed customer's classes end with it.",
        "contentType": "application/cloudevents+json",
        "headers": _structured_headers(
            **{CHANGE_ID_HEADER: {"type": "string", "description": "The record id (`id`)."}}
        ),
        "payload": _cloudevent_payload(
            MERGED_EVENT_TYPE,
            MERGED_DATASCHEMA,
            "./json/customer-merged.v1.schema.json",
            source={"const": CHANGE_SOURCE},
        ),
        "bindings": _key("The survivor's customer id (the event's `subject`)."),
    }


def _customer_erased_message() -> dict[str, Any]:
    return {
        "name": ERASED_EVENT_TYPE,
        "title": ERASED_EVENT_TYPE,
        "summary": "Forget this customer: it was erased, with every id merged into it.",
        "description": "One record per erased customer id, keyed by it. A consumer deletes "
        "what it holds on `customer_id` (classes, history, copies of events) and keeps "
        "nothing that leads back to the person; no class change for the id follows (its "
        "later events are suppressed). The classifier keeps no copy of the record: it is "
        "on this topic only (for the topic's retention), not in the change feed.",
        "contentType": "application/cloudevents+json",
        "headers": _structured_headers(
            **{CHANGE_ID_HEADER: {"type": "string", "description": "The record id (`id`)."}}
        ),
        "payload": _cloudevent_payload(
            ERASED_EVENT_TYPE,
            ERASED_DATASCHEMA,
            "./json/customer-erased.v1.schema.json",
            source={"const": CHANGE_SOURCE},
        ),
        "bindings": _key("The erased customer id (the event's `subject`)."),
    }


def _dead_letter_message() -> dict[str, Any]:
    numeric = {"type": "string", "pattern": "^[0-9]+$"}
    return {
        "name": "dead.letter",
        "title": "Dead letter",
        "summary": "An activity record the classifier could not process, unchanged, with why.",
        "description": "Value, key and headers are the original record's (a binary-mode "
        "CloudEvent keeps its `ce_*` headers and `content-type`); the `dlq_*` and "
        "`original_*` headers are added.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": [
                "dlq_reason",
                "dlq_error",
                "original_topic",
                "original_partition",
                "original_offset",
            ],
            "properties": {
                "dlq_reason": {
                    "type": "string",
                    "description": "Why, e.g. empty, invalid_envelope, unknown_type, invalid_data.",
                },
                "dlq_error": {
                    "type": "string",
                    "maxLength": 1000,
                    "description": "What was wrong (field paths and messages; no values).",
                },
                "original_topic": {"type": "string"},
                "original_partition": numeric,
                "original_offset": numeric,
                "content-type": {
                    "type": "string",
                    "description": "The original record's, when it had one.",
                },
            },
        },
        "payload": {
            "type": "string",
            "format": "binary",
            "description": "The original record's value, byte for byte.",
        },
        "bindings": _key("The original record's key (the customer id)."),
    }


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the three topics, as their records are on the wire."""
    activity = {t: _activity_message(t, m) for t, m in sorted(EVENT_TYPES.items())}
    messages = {
        **activity,
        "classChanged": _class_changed_message(),
        "customerMerged": _customer_merged_message(),
        "customerErased": _customer_erased_message(),
    }
    messages["deadLetter"] = _dead_letter_message()

    def refs(names: Any) -> dict[str, Any]:
        return {n: {"$ref": f"#/components/messages/{n}"} for n in names}

    def operation(action: str, channel: str, summary: str) -> dict[str, Any]:
        return {"action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary}

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Customer classifier topics",
            "version": "1.0.0",
            "description": "Activity events in, class changes out, and dead letters. Events "
            f"and class changes are CloudEvents 1.0. {STRUCTURED_MODE} The classifier also "
            "consumes binary content mode (attributes in `ce_*` headers, `content-type: "
            "application/json`, the data as the value), the default of the CloudEvents "
            "SDKs; both are validated against the same schemas.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": {
            "activity": {
                "address": ACTIVITY_TOPIC,
                "title": "Customer activity",
                "description": "All intake, keyed by customer id; one message per event type.",
                "messages": refs(activity),
            },
            "classChanges": {
                "address": CLASS_CHANGES_TOPIC,
                "title": "Class changes",
                "description": "One CloudEvent per class change, keyed by customer id, one "
                "per merge and one per erased id; dedupe by `id` (the change id). Webhook "
                "deliveries (README: Webhooks) carry the same `class.changed` records as "
                "their body.",
                "messages": refs(["classChanged", "customerMerged", "customerErased"]),
            },
            "deadLetters": {
                "address": ACTIVITY_DLQ_TOPIC,
                "title": "Dead letters",
                "description": "Activity records the classifier could not process.",
                "messages": refs(["deadLetter"]),
            },
        },
        "operations": {
            "publishActivity": operation("send", "activity", "Ingest publishes intake."),
            "consumeActivity": operation(
                "receive", "activity", "The classifier's workers consume it (either mode)."
            ),
            "publishClassChanges": operation(
                "send", "classChanges", "The outbox relay announces class changes."
            ),
            "publishDeadLetters": operation(
                "send", "deadLetters", "The classifier dead-letters poison records."
            ),
        },
        "components": {"messages": messages},
    }


def rendered() -> dict[str, str]:
    """Relative path under schemas/ -> file text, for every generated contract file.

    The scheme format's schema (json/scheme.schema.json) belongs to the
    classifier and is written by `python -m classifier.schemes.publish`: the
    contracts package depends on no service.
    """
    out = {
        path: json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for path, schema in json_schemas().items()
    }
    out["asyncapi.yaml"] = (
        "# Generated by `python -m eventschemas.generate`; do not edit.\n"
        + yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True)
    )
    return out


def write(files: dict[str, str]) -> None:
    """Write generated files (relative path under schemas/ -> text)."""
    for rel, text in files.items():
        path = SCHEMAS_DIR / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote schemas/{rel}")  # noqa: T201 - a command-line tool


def main() -> None:
    write(rendered())


if __name__ == "__main__":
    main()
