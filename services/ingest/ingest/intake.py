"""Intake helpers shared by every endpoint: one event, or a batch (JSON array or NDJSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, Field, ValidationError

from eventschemas.envelope import Envelope
from eventschemas.problems import FieldError, ServiceError, field_errors
from ingest.errors import IngestError, InvalidInput
from ingest.fingerprints import ConflictingResend, conflict_errors
from ingest.gate import IntakeGate
from ingest.metrics import REJECTS
from ingest.publisher import EventPublisher

MAX_BATCH_ITEMS = 1000
Item = TypeVar("Item", bound=BaseModel)


class UnsupportedMediaType(IngestError):
    status = 415
    slug = "unsupported-media-type"
    title = "Send application/json (an array) or application/x-ndjson"


class BatchTooLarge(IngestError):
    status = 413
    slug = "batch-too-large"
    title = f"A batch holds at most {MAX_BATCH_ITEMS} items"


SUPPRESSED_DESCRIPTION = (
    "Ids of events left out because their customer or identifier was erased "
    "(suppressed): never published."
)


class Accepted(BaseModel):
    """The broker acknowledged these events; `customer_ids[i]` is the customer
    `event_ids[i]` is keyed by (derived ids `id-e-…`/`id-p-…` included), for lookups.
    An event of an erased customer is not published: `accepted` 0, its id in `suppressed`."""

    accepted: int
    event_ids: list[str]
    customer_ids: list[str]
    suppressed: list[str] = Field(default_factory=list, description=SUPPRESSED_DESCRIPTION)


async def accept_one(gate: IntakeGate, publisher: EventPublisher, envelope: Envelope) -> Accepted:
    """Publish one event and answer with its id once the broker acknowledged it."""
    conflicts, suppressed = await gate.screen([envelope])
    if conflicts:
        raise ConflictingResend(
            f"{envelope.type} {envelope.id} was accepted with another {', '.join(conflicts[0])}",
            errors=conflict_errors(conflicts[0]),
        )
    if suppressed:
        return Accepted(accepted=0, event_ids=[], customer_ids=[], suppressed=[envelope.id])
    await gate.publish(publisher, [envelope])
    return Accepted(
        accepted=1, event_ids=[envelope.id], customer_ids=[envelope.subject], suppressed=[]
    )


class Rejected(BaseModel):
    """An item that was not accepted, and why."""

    index: int
    errors: list[FieldError]


class BatchAccepted(BaseModel):
    """The broker acknowledged `event_ids` (in item order), keyed by `customer_ids`
    (one per event); `rejected` items were not sent, nor were `suppressed` ones (events
    of erased customers or identifiers, by event id)."""

    accepted: int
    event_ids: list[str]
    customer_ids: list[str]
    rejected: list[Rejected]
    suppressed: list[str] = Field(default_factory=list, description=SUPPRESSED_DESCRIPTION)


async def read_items(request: Request) -> list[Any]:
    """Parse the body as a JSON array or as NDJSON (one object per line)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    try:
        if content_type == "application/json":
            items = orjson.loads(body)
            if not isinstance(items, list):
                raise InvalidInput("body", "expected a JSON array of items")
        elif content_type in ("application/x-ndjson", "application/ndjson"):
            items = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        else:
            raise UnsupportedMediaType(f"content type {content_type or 'none'!r} not supported")
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"invalid JSON: {exc}") from exc
    if len(items) > MAX_BATCH_ITEMS:
        raise BatchTooLarge(f"{len(items)} items sent")
    if not items:
        raise InvalidInput("body", "the batch is empty")
    return items


def validate_items(
    items: list[Any], model: type[Item], build: Callable[[Item], Envelope]
) -> tuple[list[Envelope], list[Rejected]]:
    """Validate every item; good ones become envelopes, bad ones are reported by index."""
    envelopes: list[Envelope] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(items):
        try:
            envelopes.append(build(model.model_validate(raw)))
        except ValidationError as exc:
            rejected.append(
                Rejected(
                    index=index,
                    errors=field_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]),
                )
            )
        except ServiceError as exc:
            rejected.append(Rejected(index=index, errors=exc.errors or []))
    return envelopes, rejected


BATCH_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS}
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


def _item_errors(rejected: list[Rejected]) -> list[FieldError]:
    """Every rejected item's errors, each field prefixed with the item's index."""
    return [
        FieldError(
            field=f"[{r.index}].{e.field}",
            location=f"body[{r.index}].{e.field}",
            message=e.message,
        )
        for r in rejected
        for e in r.errors
    ]


class NoValidItems(IngestError):
    status = 422
    slug = "validation-error"
    title = "No item of the batch is valid"


def _drop_conflicts(
    envelopes: list[Envelope], rejected: list[Rejected], conflicts: dict[int, list[str]]
) -> list[Envelope]:
    """Move conflicting re-sends from `envelopes` to `rejected` (by item index)."""
    invalid = {r.index for r in rejected}
    # Every item became one envelope or one rejection: envelopes keep item order.
    indexes = [i for i in range(len(envelopes) + len(invalid)) if i not in invalid]
    for position, fields in conflicts.items():
        rejected.append(Rejected(index=indexes[position], errors=conflict_errors(fields)))
    rejected.sort(key=lambda r: r.index)
    return [e for position, e in enumerate(envelopes) if position not in conflicts]


async def accept_batch(
    request: Request,
    gate: IntakeGate,
    publisher: EventPublisher,
    model: type[Item],
    build: Callable[[Item], Envelope],
) -> BatchAccepted:
    """Publish the valid items of a batch (all acknowledged, or 503 for all); report the rest."""
    items = await read_items(request)
    envelopes, rejected = validate_items(items, model, build)
    conflicts = await gate.admit(envelopes)
    if conflicts:
        REJECTS.labels(reason="conflicting-resend").inc(len(conflicts))
        envelopes = _drop_conflicts(envelopes, rejected, conflicts)
    if not envelopes and conflicts and len(conflicts) == len(rejected):
        raise ConflictingResend(
            "every item was accepted before with another payload under its id and revision",
            errors=_item_errors(rejected),
        )
    if not envelopes:
        raise NoValidItems(
            f"none of the {len(items)} items is valid", errors=_item_errors(rejected)
        )
    envelopes, suppressed = await gate.leave_out_suppressed(envelopes)
    await gate.publish(publisher, envelopes)
    if len(rejected) > len(conflicts):
        REJECTS.labels(reason="invalid-item").inc(len(rejected) - len(conflicts))
    return BatchAccepted(
        accepted=len(envelopes),
        event_ids=[e.id for e in envelopes],
        customer_ids=[e.subject for e in envelopes],
        rejected=rejected,
        suppressed=suppressed,
    )
