"""State of ingest's Fxiaoke sync process: cursors and account -> customer links.

Declared here because the classifier owns the schema (Alembic migrations);
only the ingest sync process (`ingest fxiaoke run`) reads and writes them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, func
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class FxiaokeSyncCursor(Base):
    """Per tenant and object: the (last_modified_time, _id) of the last published record."""

    __tablename__ = "fxiaoke_sync_cursors"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_api_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    record_id: Mapped[str] = mapped_column(String(128, collation="C"), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class FxiaokeAccount(Base):
    """Which customer an Fxiaoke account's records belong to (ids only, no names)."""

    __tablename__ = "fxiaoke_accounts"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), nullable=False)
