"""Erasures with their receipts, suppressed identifiers, and the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class Erasure(Base):
    """One erasure request and its receipt.

    `target` holds what to erase (a customer id, or an identifier's keyed digest)
    only until the erasure completes; the receipt keeps counts per kind, never
    personal data.
    """

    __tablename__ = "erasures"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # customer, email, phone or crm (a CRM record: its customer id)
    target_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    # queued, running, completed, failed
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    requested_by: Mapped[str] = mapped_column(String(200), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_erasures_pending", "requested_at", postgresql_where="status <> 'completed'"),
    )


class Suppression(Base):
    """An identifier (kind, keyed digest) whose events are dropped: an erased customer's
    id, e-mail and phone. Lifted when the person comes back with consent."""

    __tablename__ = "suppressions"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    erasure_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lifted_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_suppressions_active", "kind", "digest", postgresql_where="lifted_at IS NULL"),
    )


class AuditEntry(Base):
    """An admin action: who (the API key id, or `cli`), when, what. Append-only (a
    trigger refuses UPDATE and DELETE). Customers are named by a keyed digest, so an
    erasure leaves nothing here that leads to the person."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )

    __table_args__ = (Index("ix_audit_log_action_at", "action", "at"),)
