"""Request and response bodies of the order endpoints."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from eventschemas.events import CustomerIdIn, NaturalIdIn, OrderStatus
from eventschemas.limits import Instant, RevisionIn
from ingest.identity import CustomerRef

Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4, description="Decimal string or number, >= 0."),
    # What the server enforces, in the schema too: up to 14 digits, then up to 4 decimals.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 100_000_000_000_000},
                {"type": "string", "pattern": r"^[0-9]{1,14}(\.[0-9]{1,4})?$"},
            ],
            "description": "Decimal string or number, >= 0, at most 14 digits and 4 decimals.",
        }
    ),
]
CurrencyIn = Annotated[
    str,
    StringConstraints(to_upper=True, pattern=r"^[A-Za-z]{3}$"),
    Field(description="ISO 4217 code, e.g. CNY."),
]


class OrderIn(CustomerRef):
    """An order as a shop or ERP sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "SO-10001",
                    "customer_id": "cust-42",
                    "amount": "1299.00",
                    "currency": "CNY",
                    "placed_at": "2026-11-20T09:30:00+08:00",
                    "status": "paid",
                }
            ]
        },
    )

    order_id: NaturalIdIn
    amount: Amount
    currency: CurrencyIn
    placed_at: Instant
    status: OrderStatus = OrderStatus.PLACED
    revision: RevisionIn = 0


class RefundIn(BaseModel):
    """A full or partial refund of an order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "refund_id": "RF-1",
                    "customer_id": "cust-42",
                    "amount": "300.00",
                    "currency": "CNY",
                    "refunded_at": "2026-11-21T10:00:00+08:00",
                }
            ]
        },
    )

    refund_id: NaturalIdIn
    customer_id: CustomerIdIn
    amount: Amount
    currency: CurrencyIn
    refunded_at: Instant
    revision: RevisionIn = 0


class CancellationIn(BaseModel):
    """An order was cancelled: it no longer counts as a purchase."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerIdIn
    cancelled_at: Instant
    revision: RevisionIn = 0
