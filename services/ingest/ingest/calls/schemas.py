"""Request bodies of the call-log endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from eventschemas.events import CallOutcome, IntentLevel, NaturalIdIn
from eventschemas.limits import FreeText, IdTextIn, Instant, RevisionIn
from ingest.identity import CustomerRef


class CallIn(CustomerRef):
    """A telesales call as a call-centre system logs it. `notes` may hold personal data."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "call_id": "CALL-991",
                    "customer_id": "cust-42",
                    "agent_id": "agent-7",
                    "direction": "outbound",
                    "started_at": "2026-11-20T14:05:00+08:00",
                    "duration_seconds": 184,
                    "outcome": "interested",
                    "intent": "medium",
                    "notes": "wants a quote for 20 units",
                }
            ]
        },
    )

    call_id: NaturalIdIn
    agent_id: IdTextIn | None = Field(default=None, max_length=128)
    direction: Literal["inbound", "outbound"] = "outbound"
    started_at: Instant
    duration_seconds: int = Field(default=0, ge=0, le=86_400)
    outcome: CallOutcome
    intent: IntentLevel | None = None
    notes: FreeText | None = Field(default=None, max_length=10_000)
    revision: RevisionIn = 0
