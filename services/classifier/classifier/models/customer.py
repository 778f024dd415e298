"""A customer: its facts document, aggregates, key features and current classes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Orders (with refunds/cancellations), calls and CRM profile as one document
    # (see engine/facts.py), a checkpoint: it includes the facts-log rows up to
    # `facts_through`; a load folds the ones after it.
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # How the time-moving feature values move after `evaluated_at` (see
    # engine/features.py Feature.motion): reads show them as of the read.
    # json, as document_slots and classes: read whole, never looked into (0016, 0017).
    motion: Mapped[dict[str, Any]] = mapped_column(
        JSON, nullable=False, default=dict, server_default=text("'{}'::json")
    )
    facts_through: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    order_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    gross_revenue: Mapped[Decimal] = mapped_column(Numeric(20, 4), nullable=False, default=0)
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(20, 4), nullable=False, default=0)
    net_revenue: Mapped[Decimal] = mapped_column(Numeric(20, 4), nullable=False, default=0)
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    call_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_call_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    features: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    # {dimension: {"class", "since", "rule", "scheme_version", "explanation"}}
    # json, not jsonb: read and rewritten whole by every batch, looked into by no
    # query but the cut-off flagging (which casts); see migration 0016.
    classes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Manual classes per dimension: {"class", "reason", "expires_at" (µs|None), "set_at" (µs)}.
    overrides: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    scheme_version: Mapped[int | None] = mapped_column(Integer)
    # The public document the API sends as it is (processing/documents.py), where
    # its read-time values sit, and how many rendering writes made it (a trigger
    # empties it when another write changes what it shows).
    document: Mapped[bytes | None] = mapped_column(LargeBinary)
    document_slots: Mapped[list[Any] | None] = mapped_column(JSON)
    document_rev: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_review_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_id: Mapped[str | None] = mapped_column(String(200))
    # The activity partition the customer's events arrive on: the scheduler of
    # the worker owning that partition reviews the customer (see scheduler.py).
    kafka_partition: Mapped[int | None] = mapped_column(Integer)
    # Set when a merge absorbed this customer: its id leads to the survivor, its
    # facts moved there, its class history stays readable here.
    merged_into: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        Index(
            "ix_customers_partition_review",
            "kafka_partition",
            "next_review_at",
            postgresql_where="next_review_at IS NOT NULL",
        ),
        Index(
            "ix_customers_merged_into", "merged_into", postgresql_where="merged_into IS NOT NULL"
        ),
    )


class CustomerFactRecord(Base):
    """The facts log: every fact ever folded into a customer's state, append-only.

    Read only when a customer's state must be rebuilt (a backdated fact, a
    scheme whose features the summary lacks, replay). `body` holds what the
    engine needs (see engine/facts.py `Fact`): no call notes, names or contact
    details.
    """

    __tablename__ = "customer_facts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    fact_key: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(200))
    # The customer id the fact's event named, when a merge moved the fact to
    # another customer (NULL: `customer_id` itself): an unmerge moves it back.
    origin_id: Mapped[str | None] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        Index("ix_customer_facts_customer_at", "customer_id", "at"),
        Index("ix_customer_facts_customer_id_id", "customer_id", "id"),
    )
