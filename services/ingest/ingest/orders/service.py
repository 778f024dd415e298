"""Turns validated order input into order events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from eventschemas.events import OrderPlaced
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.orders.schemas import OrderIn

FOUR_PLACES = Decimal("0.0001")


def to_base_currency(settings: IngestSettings, amount: Decimal, currency: str) -> Decimal:
    """Convert an amount with the configured rate; an unknown currency is an input error."""
    rate = settings.fx_rates.get(currency)
    if rate is None:
        raise InvalidInput("currency", f"unknown or unsupported currency {currency!r}")
    return (amount * rate).quantize(FOUR_PLACES, rounding=ROUND_HALF_EVEN)


def check_not_future(settings: IngestSettings, field: str, moment: datetime) -> None:
    """Reject instants further in the future than the allowed clock skew."""
    limit = datetime.now(UTC) + timedelta(seconds=settings.max_clock_skew_seconds)
    if moment > limit:
        raise InvalidInput(field, "lies in the future beyond the allowed clock skew")


def order_placed(settings: IngestSettings, order: OrderIn) -> OrderPlaced:
    """Build the order.placed event for one order."""
    check_not_future(settings, "placed_at", order.placed_at)
    return OrderPlaced(
        customer_id=order.customer_id,
        revision=order.revision,
        order_id=order.order_id,
        amount=order.amount,
        currency=order.currency,
        amount_base=to_base_currency(settings, order.amount, order.currency),
        base_currency=settings.base_currency,
        placed_at=order.placed_at,
        status=order.status,
    )
