"""Turns validated order input into order events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from eventschemas.events import OrderCancelled, OrderPlaced, OrderRefunded
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.orders.schemas import CancellationIn, OrderIn, RefundIn

FOUR_PLACES = Decimal("0.0001")


def to_base_currency(settings: IngestSettings, amount: Decimal, currency: str) -> Decimal:
    """Convert an amount with the configured rate; an unknown currency is an input error."""
    rate = settings.fx_rates.get(currency)
    if rate is None:
        raise InvalidInput("currency", f"unknown or unsupported currency {currency!r}")
    return (amount * rate).quantize(FOUR_PLACES, rounding=ROUND_HALF_EVEN)


def check_not_future(settings: IngestSettings, field: str, moment: datetime) -> None:
    """Reject instants before the plausible range or beyond now + the allowed clock skew."""
    limit = datetime.now(UTC) + timedelta(seconds=settings.max_clock_skew_seconds)
    if moment > limit:
        raise InvalidInput(field, "lies in the future beyond the allowed clock skew")
    if moment < settings.earliest_instant:
        raise InvalidInput(
            field, f"lies before {settings.earliest_instant.date()} (INGEST_EARLIEST_INSTANT)"
        )


def order_placed(settings: IngestSettings, order: OrderIn) -> OrderPlaced:
    """Build the order.placed event for one order."""
    check_not_future(settings, "placed_at", order.placed_at)
    customer_id, identity = order.resolve(settings)
    return OrderPlaced(
        customer_id=customer_id,
        identity=identity,
        revision=order.revision,
        order_id=order.order_id,
        amount=order.amount,
        currency=order.currency,
        amount_base=to_base_currency(settings, order.amount, order.currency),
        base_currency=settings.base_currency,
        placed_at=order.placed_at,
        status=order.status,
    )


def order_refunded(settings: IngestSettings, order_id: str, refund: RefundIn) -> OrderRefunded:
    """Build the order.refunded event for a full or partial refund."""
    check_not_future(settings, "refunded_at", refund.refunded_at)
    return OrderRefunded(
        customer_id=refund.customer_id,
        revision=refund.revision,
        refund_id=refund.refund_id,
        order_id=order_id,
        amount=refund.amount,
        currency=refund.currency,
        amount_base=to_base_currency(settings, refund.amount, refund.currency),
        base_currency=settings.base_currency,
        refunded_at=refund.refunded_at,
    )


def order_cancelled(
    settings: IngestSettings, order_id: str, cancellation: CancellationIn
) -> OrderCancelled:
    """Build the order.cancelled event."""
    check_not_future(settings, "cancelled_at", cancellation.cancelled_at)
    return OrderCancelled(
        customer_id=cancellation.customer_id,
        revision=cancellation.revision,
        order_id=order_id,
        cancelled_at=cancellation.cancelled_at,
    )
