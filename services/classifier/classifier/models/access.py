"""Who may call the APIs: API keys (stored as SHA-256 hashes, never in clear),
and what ingest accepted under each natural id and revision."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class ApiKey(Base):
    """One key store for both services: read/admin (classifier), *:write (ingest)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Space-separated: read, admin, orders:write, calls:write, imports:write.
    scope: Mapped[str] = mapped_column(String(128), nullable=False)
    # Intake quota (events per second and burst); NULL = ingest's defaults, 0 = none.
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IntakeFingerprint(Base):
    """Digests of each data field of an accepted event, by its deterministic id
    (source, type, natural id, revision): a re-send that differs is a 409.
    Written by ingest; digests only, never the values (they may be personal data)."""

    __tablename__ = "intake_fingerprints"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    digests: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
    )


class ConsoleSession(Base):
    """A browser signed in to the console with an API key: the cookie holds a random
    token, this table its hash (and the hash of the session's CSRF token). Revoked at
    sign-out; the key's scope applies, and revoking the key ends its sessions."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
