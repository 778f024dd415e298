"""Turns validated call logs into call.logged events."""

from __future__ import annotations

from eventschemas.events import CallLogged
from ingest.calls.schemas import CallIn
from ingest.config import IngestSettings
from ingest.orders.service import check_not_future


def call_logged(settings: IngestSettings, call: CallIn) -> CallLogged:
    """Build the call.logged event; notes travel in the event but are never logged."""
    check_not_future(settings, "started_at", call.started_at)
    customer_id, identity = call.resolve(settings)
    fields = call.model_dump(exclude={"customer_id", "phone", "email"})
    return CallLogged(customer_id=customer_id, identity=identity, **fields)
