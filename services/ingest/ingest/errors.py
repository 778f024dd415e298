"""Domain errors of the ingest service; each carries its HTTP status."""

from __future__ import annotations

from eventschemas.problems import InvalidInput, ServiceError

__all__ = ["EventTooLarge", "IngestError", "InvalidInput", "KafkaUnavailable"]


class IngestError(ServiceError):
    """Base of ingest-specific errors."""


class KafkaUnavailable(IngestError):
    status = 503
    slug = "broker-unavailable"
    title = "Event broker unavailable; nothing was accepted, retry later"


class EventTooLarge(IngestError):
    status = 413
    slug = "event-too-large"
    title = "An event is larger than one message on the broker may be"
