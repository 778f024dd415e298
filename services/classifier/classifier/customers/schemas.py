"""Response bodies of the customer endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from classifier.params import Instant


class ChangeOut(BaseModel):
    """The smallest change that reaches a better class."""

    kind: str = Field(
        description="orders | revenue | points | calls | intent | contact | deal_stage | "
        "attribute | time"
    )
    feature: str = Field(description="The feature the rule compares (e.g. orders_365d).")
    amount: float | None = Field(
        description="How much more: orders, calls (whole numbers), revenue (base currency), "
        "points; the intent level 1-3; null for a stage, an attribute or time."
    )
    within_days: int | None = Field(description="The window the change must fall in, if any.")
    at: datetime | None = Field(description="For time: the instant the class is reached.")
    value: Any = Field(
        default=None, description="The deal stage, attribute value or call outcome to reach."
    )


class NextOut(BaseModel):
    """The nearest better class (by the scheme's order) and what it would take."""

    model_config = ConfigDict(populate_by_name=True)

    cls: str = Field(alias="class")
    change: ChangeOut
    text: dict[str, str] = Field(description="The change in words, by language (en, zh).")


class ChangesAtOut(BaseModel):
    """The class changes by itself (no new facts) at `at`."""

    model_config = ConfigDict(populate_by_name=True)

    cls: str = Field(alias="class")
    at: datetime
    text: dict[str, str]


class CustomerClassOut(BaseModel):
    """The class a customer holds in one dimension, since when, why, what it would take to
    move up (`next`), and when it changes by itself (`changes_at`)."""

    model_config = ConfigDict(populate_by_name=True)

    dimension: str
    cls: str = Field(alias="class")
    since: datetime
    scheme_version: int
    rule: str
    explanation: dict[str, Any]
    next: NextOut | None = Field(
        default=None,
        description="The nearest better class and the smallest change that reaches it, as "
        "of the evaluation (`evaluated_at`); null for the best class, a manual override, "
        "a dimension whose classes are not ordered (`ordered: false` in the scheme), or "
        "when no single kind of change reaches a better class.",
    )
    changes_at: ChangesAtOut | None = Field(
        default=None,
        description="When the class changes by itself unless something happens (e.g. "
        "becomes churned when the last order leaves the year); null if it holds.",
    )


class AggregatesOut(BaseModel):
    order_count: int
    gross_revenue: Decimal
    refunded_amount: Decimal
    net_revenue: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    call_count: int
    last_call_at: datetime | None


class OverrideOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    cls: str = Field(alias="class")
    reason: str
    expires_at: datetime | None
    set_at: datetime
    active: bool = Field(description="False once expired (it then no longer applies).")


class CustomerOut(BaseModel):
    """One customer's classes per dimension with explanations, aggregates and key features."""

    id: str
    merged_into: str | None = Field(
        default=None,
        description="Set when the id asked for was merged into this customer (then `id`, "
        "the survivor): the answer is the survivor's. The absorbed id's class history "
        "stays readable under its own id.",
    )
    classes: dict[str, CustomerClassOut]
    aggregates: AggregatesOut
    features: dict[str, Any] = Field(
        description="Key features. Values that move with time alone (days since, decaying "
        "scores) are as of `values_as_of`; the others as of `evaluated_at`."
    )
    scheme_version: int | None
    overrides: dict[str, OverrideOut] = Field(default_factory=dict)
    evaluated_at: datetime | None
    next_review_at: datetime | None
    updated_at: datetime
    values_as_of: datetime | None = Field(
        default=None,
        description="The instant the time-moving values in `features` and in the "
        "explanations refer to: the read, unless a review is due (then `evaluated_at`).",
    )
    review_due: bool = Field(
        default=False,
        description="True when `next_review_at` has passed and the worker has not reviewed "
        "the customer yet: a class may change at that review.",
    )

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


class LookupIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ids": ["cust-42", "cust-43"]}]}
    )

    ids: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        min_length=1, description="Up to 1,000 customer ids."
    )


class LookupOut(BaseModel):
    customers: list[CustomerOut]
    unknown: list[str] = Field(description="Requested ids with no customer (not an error).")


class HistoryPeriod(BaseModel):
    """A period during which the customer held a class: [valid_from, valid_to)."""

    model_config = ConfigDict(populate_by_name=True)

    dimension: str
    cls: str = Field(alias="class")
    valid_from: datetime
    valid_to: datetime | None
    reason: str
    change_id: str
    scheme_version: int


class HistoryOut(BaseModel):
    customer_id: str
    periods: list[HistoryPeriod]


class ClassAsOf(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    cls: str = Field(alias="class")
    since: datetime
    reason: str
    scheme_version: int


class ClassesAsOfOut(BaseModel):
    customer_id: str
    as_of: datetime
    classes: dict[str, ClassAsOf] = Field(description="Dimensions with a class at that instant.")


class OverrideIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"class": "A", "reason": "strategic account", "expires_at": "2027-01-01T00:00:00Z"}
            ]
        },
    )

    cls: str = Field(alias="class", min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: Instant | None = Field(default=None, description="None: until removed.")
