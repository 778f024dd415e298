"""The identity graph: which customer each identifier leads to, and the merges made.

An identifier is (kind, keyed digest): ingest sends e-mail and phone digests
(eventschemas.events.identity_digest), never the values. A customer id that
was absorbed by a merge leads to its survivor through `customers.merged_into`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, Boolean, DateTime, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class IdentityLink(Base):
    """One identifier and the customer it leads to.

    `subjects`: the distinct customer ids events carried it with, kept up to the
    ambiguity limit plus one; past the limit the identifier is `ambiguous` (a
    switchboard number, an info@ mailbox) and merges nothing any more.
    """

    __tablename__ = "identity_links"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    subjects: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    ambiguous: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        Index("ix_identity_links_customer", "customer_id"),
        Index("ix_identity_links_ambiguous", "kind", postgresql_where="ambiguous"),
    )


class CustomerMerge(Base):
    """The audit trail of merges: who or what merged `absorbed_id` into `survivor_id`,
    and who undid it."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    survivor_id: Mapped[str] = mapped_column(String(128), nullable=False)
    absorbed_id: Mapped[str] = mapped_column(String(128), nullable=False)
    # identity (a shared e-mail/phone digest), crm (a CRM's merge event) or admin.
    cause: Mapped[str] = mapped_column(String(16), nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(200))
    # The API key id of an admin merge, the event source of a CRM merge.
    actor: Mapped[str | None] = mapped_column(String(200))
    merged_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_customer_merges_survivor", "survivor_id", "merged_at"),
        Index("ix_customer_merges_absorbed", "absorbed_id", "merged_at"),
    )


class KeptApart(Base):
    """Two customers an unmerge split: identifiers they share no longer merge them
    (an explicit merge still does). `low_id` < `high_id`."""

    __tablename__ = "identity_apart"

    low_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    high_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
