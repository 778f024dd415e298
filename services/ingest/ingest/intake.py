"""Intake helpers shared by every endpoint: one event, or a batch (JSON array or NDJSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from eventschemas.envelope import Envelope
from eventschemas.problems import FieldError, ServiceError, field_errors
from ingest.errors import IngestError, InvalidInput
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


class Accepted(BaseModel):
    """The broker acknowledged these events."""

    accepted: int
    event_ids: list[str]


async def accept_one(publisher: EventPublisher, envelope: Envelope) -> Accepted:
    """Publish one event and answer with its id once the broker acknowledged it."""
    await publisher.publish([envelope])
    return Accepted(accepted=1, event_ids=[envelope.id])


class Rejected(BaseModel):
    """An item that was not accepted, and why."""

    index: int
    errors: list[FieldError]


class BatchAccepted(BaseModel):
    """The broker acknowledged `event_ids` (in item order); `rejected` items were not sent."""

    accepted: int
    event_ids: list[str]
    rejected: list[Rejected]


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
            "application/json": {"schema": {"type": "array", "maxItems": MAX_BATCH_ITEMS}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


class NoValidItems(IngestError):
    status = 422
    slug = "validation-error"
    title = "No item of the batch is valid"


async def accept_batch(
    request: Request,
    publisher: EventPublisher,
    model: type[Item],
    build: Callable[[Item], Envelope],
) -> BatchAccepted:
    """Publish the valid items of a batch (all acknowledged, or 503 for all); report the rest."""
    items = await read_items(request)
    envelopes, rejected = validate_items(items, model, build)
    if not envelopes:
        errors = [
            FieldError(
                field=f"[{r.index}].{e.field}",
                location=f"body[{r.index}].{e.field}",
                message=e.message,
            )
            for r in rejected
            for e in r.errors
        ]
        raise NoValidItems(f"none of the {len(items)} items is valid", errors=errors)
    await publisher.publish(envelopes)
    if rejected:
        REJECTS.labels(reason="invalid-item").inc(len(rejected))
    return BatchAccepted(
        accepted=len(envelopes), event_ids=[e.id for e in envelopes], rejected=rejected
    )
