"""Kafka record -> (envelope, event); anything undecodable is a poison message."""

from __future__ import annotations

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


def decode(value: bytes | None) -> tuple[Envelope, ActivityEvent]:
    """Parse and validate one record value."""
    if not value:
        raise PoisonMessage("empty", "record has no value")
    try:
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
