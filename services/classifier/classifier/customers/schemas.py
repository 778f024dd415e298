"""Response bodies of the customer endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CustomerClassOut(BaseModel):
    """The class a customer holds in one dimension, since when, and why."""

    model_config = ConfigDict(populate_by_name=True)

    dimension: str
    cls: str = Field(alias="class")
    since: datetime
    scheme_version: int
    rule: str
    explanation: dict[str, Any]


class AggregatesOut(BaseModel):
    order_count: int
    gross_revenue: Decimal
    refunded_amount: Decimal
    net_revenue: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    call_count: int
    last_call_at: datetime | None


class CustomerOut(BaseModel):
    """One customer's classes per dimension with explanations, aggregates and key features."""

    id: str
    classes: dict[str, CustomerClassOut]
    aggregates: AggregatesOut
    features: dict[str, Any]
    scheme_version: int | None
    evaluated_at: datetime | None
    next_review_at: datetime | None
    updated_at: datetime

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "cust-42",
                    "classes": {
                        "purchase_behavior": {
                            "dimension": "purchase_behavior",
                            "class": "regular",
                            "since": "2026-11-20T01:30:00Z",
                            "scheme_version": 1,
                            "rule": "frequent_and_recent",
                            "explanation": {
                                "summary": "(orders_365d = 5 >= 4 and recency_days = 2 <= 90)"
                            },
                        }
                    },
                }
            ]
        }
    }
