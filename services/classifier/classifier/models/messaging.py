"""Inbox of processed event ids and the outbox of class changes (also the change feed)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base

# NOTIFY'd by every transaction that wrote outbox rows (class_changes); the relay LISTENs.
OUTBOX_CHANNEL = "class_changes_outbox"
# A `customer.merged` record in the outbox: a class_changes row in this
# pseudo-dimension (no scheme dimension starts with "@"): customer_id is the
# survivor, `rule` the absorbed id.
MERGED_DIMENSION = "@merged"
MERGED_CLASS = "merged"
# A `customer.erased` record: customer_id the erased id, `rule` the erasure id. The
# relay deletes the row once the broker has it (no table keeps an erased id).
ERASED_DIMENSION = "@erased"
ERASED_CLASS = "erased"


class ProcessedEvent(Base):
    """An event id applied once; a redelivered event with this id is skipped."""

    __tablename__ = "inbox"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    # Pruned by age (consumer/inbox.py).
    __table_args__ = (Index("ix_inbox_processed_at", "processed_at"),)


class ClassChange(Base):
    """A class change, written with the state that caused it and relayed to Kafka."""

    __tablename__ = "class_changes"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    change_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    dimension: Mapped[str] = mapped_column(String(64), nullable=False)
    old_class: Mapped[str | None] = mapped_column(String(64))
    new_class: Mapped[str] = mapped_column(String(64), nullable=False)
    scheme_version: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(200))
    rule: Mapped[str | None] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Position in the change feed, given by the (single) relay when the change is
    # announced: the feed only ever grows at its end (no late, lower positions).
    feed_seq: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_class_changes_unpublished", "seq", postgresql_where="published_at IS NULL"),
        Index("ix_class_changes_customer", "customer_id", "seq"),
        Index("uq_class_changes_feed", "feed_seq", unique=True),
        Index("ix_class_changes_flows", "dimension", "occurred_at"),
    )
