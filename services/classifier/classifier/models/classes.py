"""Current class per dimension (for membership queries) and the class history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base


class CustomerClass(Base):
    """One row per customer and dimension; written only when the class changes."""

    __tablename__ = "customer_classes"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(64), primary_key=True)
    cls: Mapped[str] = mapped_column("class", String(64), nullable=False)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    scheme_version: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_customer_classes_members", "dimension", "class", "customer_id"),)


class ClassHistory(Base):
    """A period during which a customer held a class: [valid_from, valid_to)."""

    __tablename__ = "class_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    dimension: Mapped[str] = mapped_column(String(64), nullable=False)
    cls: Mapped[str] = mapped_column("class", String(64), nullable=False)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    change_id: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    scheme_version: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_class_history_customer", "customer_id", "dimension", "valid_from"),)
