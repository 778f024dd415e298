"""HTTP endpoints for orders."""

from __future__ import annotations

from fastapi import APIRouter, status

from eventschemas.problems import Problem
from ingest.deps import PublisherDep, SettingsDep
from ingest.orders import service
from ingest.orders.schemas import Accepted, OrderIn

router = APIRouter(prefix="/v1/orders", tags=["orders"])

PROBLEMS: dict[int | str, dict[str, object]] = {
    422: {"model": Problem, "description": "Invalid order; the body names the field."},
    503: {"model": Problem, "description": "Broker unavailable; retry after Retry-After."},
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=PROBLEMS)
async def place_order(order: OrderIn, settings: SettingsDep, publisher: PublisherDep) -> Accepted:
    """Publish an `order.placed` event; answers once the broker acknowledged it."""
    envelope = service.order_placed(settings, order).to_envelope(settings.source)
    await publisher.publish([envelope])
    return Accepted(accepted=1, event_ids=[envelope.id])
