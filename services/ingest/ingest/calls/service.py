"""Turns validated call logs into call.logged events."""

from __future__ import annotations

from eventschemas.events import CallLogged
from ingest.calls.schemas import CallIn
from ingest.config import IngestSettings
from ingest.orders.service import check_not_future


def call_logged(settings: IngestSettings, call: CallIn) -> CallLogged:
    """Build the call.logged event. Its notes (free text, may hold personal data) never
    leave ingest: dropped here unless INGEST_KEEP_FREE_TEXT=true, and never logged.
    The rules use the outcome and intent the call system gives."""
    check_not_future(settings, "started_at", call.started_at)
    customer_id, identity = call.resolve(settings)
    dropped = {"customer_id", "phone", "email"} | (set() if settings.keep_free_text else {"notes"})
    fields = call.model_dump(exclude=dropped)
    return CallLogged(customer_id=customer_id, identity=identity, **fields)
