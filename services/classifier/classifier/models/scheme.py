"""Scheme versions (immutable once activated) and population cut-offs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class SchemeVersion(Base):
    __tablename__ = "schemes"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # draft | active | retired
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("uq_schemes_one_active", "status", unique=True, postgresql_where="status = 'active'"),
    )


class PopulationCutoffs(Base):
    __tablename__ = "population_cutoffs"

    dimension: Mapped[str] = mapped_column(String(64), primary_key=True)
    scheme_version: Mapped[int] = mapped_column(Integer, nullable=False)
    cutoffs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
