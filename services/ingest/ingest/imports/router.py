"""CSV import of historical orders and call logs (multipart/form-data, field `file`)."""

from __future__ import annotations

from fastapi import APIRouter, UploadFile, status

from eventschemas.problems import Problem
from ingest.calls import service as calls
from ingest.calls.schemas import CallIn
from ingest.deps import PublisherDep, SettingsDep
from ingest.gate import ImportsGate
from ingest.imports.service import ImportReport, import_csv
from ingest.orders import service as orders
from ingest.orders.schemas import OrderIn

router = APIRouter(prefix="/v1/imports", tags=["imports"])
RESPONSES: dict[int | str, dict[str, object]] = {
    422: {"model": Problem, "description": "Not a readable CSV file, or a line too long."},
    403: {"model": Problem, "description": "The API key lacks the imports:write scope."},
    429: {
        "model": Problem,
        "description": "The API key went over its quota; rows before it were accepted.",
    },
    503: {"model": Problem, "description": "Broker failed; upload the same file again."},
}


@router.post("/orders", status_code=status.HTTP_202_ACCEPTED, responses=RESPONSES)
async def import_orders(
    gate: ImportsGate, file: UploadFile, settings: SettingsDep, publisher: PublisherDep
) -> ImportReport:
    """Orders as CSV with a header row naming the order fields; one report line per bad row."""
    return await import_csv(
        file.file,
        OrderIn,
        lambda o: orders.order_placed(settings, o).to_envelope(settings.source),
        publisher,
        gate,
        line_limit=settings.max_csv_line_bytes,
    )


@router.post("/calls", status_code=status.HTTP_202_ACCEPTED, responses=RESPONSES)
async def import_calls(
    gate: ImportsGate, file: UploadFile, settings: SettingsDep, publisher: PublisherDep
) -> ImportReport:
    """Call logs as CSV with a header row naming the call fields; a report per bad row."""
    return await import_csv(
        file.file,
        CallIn,
        lambda c: calls.call_logged(settings, c).to_envelope(settings.source),
        publisher,
        gate,
        line_limit=settings.max_csv_line_bytes,
    )
