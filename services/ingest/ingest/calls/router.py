"""HTTP endpoints for telesales call logs."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from eventschemas.problems import Problem
from ingest.calls import service
from ingest.calls.schemas import CallIn
from ingest.deps import PublisherDep, SettingsDep
from ingest.gate import CallsGate
from ingest.intake import BATCH_OPENAPI, Accepted, BatchAccepted, accept_batch, accept_one
from ingest.orders.router import PROBLEMS

router = APIRouter(prefix="/v1/calls", tags=["calls"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=PROBLEMS)
async def log_call(
    gate: CallsGate, call: CallIn, settings: SettingsDep, publisher: PublisherDep
) -> Accepted:
    """Publish a `call.logged` event; answers once the broker acknowledged it."""
    return await accept_one(
        gate, publisher, service.call_logged(settings, call).to_envelope(settings.source)
    )


@router.post(
    ":batch",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=BATCH_OPENAPI,
    responses={**PROBLEMS, 413: {"model": Problem}, 415: {"model": Problem}},
)
async def log_calls(
    gate: CallsGate, request: Request, settings: SettingsDep, publisher: PublisherDep
) -> BatchAccepted:
    """Up to 1,000 call logs (JSON array or NDJSON): good ones published, bad ones reported."""
    return await accept_batch(
        request,
        gate,
        publisher,
        CallIn,
        lambda c: service.call_logged(settings, c).to_envelope(settings.source),
    )
