"""HTTP endpoints for orders, refunds and cancellations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from eventschemas.events import NaturalIdIn
from eventschemas.problems import Problem
from ingest.deps import PublisherDep, SettingsDep
from ingest.gate import OrdersGate
from ingest.intake import BATCH_OPENAPI, Accepted, BatchAccepted, accept_batch, accept_one
from ingest.orders import service
from ingest.orders.schemas import CancellationIn, OrderIn, RefundIn

router = APIRouter(prefix="/v1/orders", tags=["orders"])

PROBLEMS: dict[int | str, dict[str, object]] = {
    403: {"model": Problem, "description": "The API key lacks this endpoint's scope."},
    409: {
        "model": Problem,
        "description": "This natural id and revision were accepted with another payload; "
        "the body names the fields that differ.",
    },
    422: {"model": Problem, "description": "Invalid input; the body names the field."},
    429: {
        "model": Problem,
        "description": "The API key is over its quota; retry after Retry-After.",
    },
    503: {"model": Problem, "description": "Broker unavailable; retry after Retry-After."},
}
OrderIdPath = Annotated[NaturalIdIn, Path(description="The order's id in the source system.")]


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=PROBLEMS)
async def place_order(
    gate: OrdersGate, order: OrderIn, settings: SettingsDep, publisher: PublisherDep
) -> Accepted:
    """Publish an `order.placed` event; answers once the broker acknowledged it."""
    return await accept_one(
        gate, publisher, service.order_placed(settings, order).to_envelope(settings.source)
    )


@router.post(
    ":batch",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=BATCH_OPENAPI,
    responses={**PROBLEMS, 413: {"model": Problem}, 415: {"model": Problem}},
)
async def place_orders(
    gate: OrdersGate, request: Request, settings: SettingsDep, publisher: PublisherDep
) -> BatchAccepted:
    """Up to 1,000 orders (JSON array or NDJSON): good ones are published, bad ones reported."""
    return await accept_batch(
        request,
        gate,
        publisher,
        OrderIn,
        lambda o: service.order_placed(settings, o).to_envelope(settings.source),
    )


@router.post("/{order_id}/refunds", status_code=status.HTTP_202_ACCEPTED, responses=PROBLEMS)
async def refund_order(
    gate: OrdersGate,
    order_id: OrderIdPath,
    refund: RefundIn,
    settings: SettingsDep,
    publisher: PublisherDep,
) -> Accepted:
    """Publish an `order.refunded` event (full or partial)."""
    return await accept_one(
        gate,
        publisher,
        service.order_refunded(settings, order_id, refund).to_envelope(settings.source),
    )


@router.post("/{order_id}/cancellation", status_code=status.HTTP_202_ACCEPTED, responses=PROBLEMS)
async def cancel_order(
    gate: OrdersGate,
    order_id: OrderIdPath,
    cancellation: CancellationIn,
    settings: SettingsDep,
    publisher: PublisherDep,
) -> Accepted:
    """Publish an `order.cancelled` event."""
    return await accept_one(
        gate,
        publisher,
        service.order_cancelled(settings, order_id, cancellation).to_envelope(settings.source),
    )
