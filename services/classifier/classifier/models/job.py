"""Background jobs (scheme activation, recompute) that a worker claims and runs in chunks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from classifier.models.base import Base

# NOTIFY'd when a job is queued or released; idle job runners LISTEN.
JOBS_CHANNEL = "classifier_jobs"
UNFINISHED = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


class Job(Base):
    """Re-evaluation of every customer, streamed by id; resumable from `cursor`.

    Rows of the former `scheme_activations` table are the jobs of kind
    `activate` (same ids: `/v1/activations/{id}` keeps its meaning).
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # activate | recompute
    # The scheme version the job re-evaluates under (activate: the one it switched to).
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    silent: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Kind-specific parameters (none yet: both kinds need only version and silent).
    params: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    changes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The last customer id whose chunk is done (keyset): a re-claimed job resumes after it.
    cursor: Mapped[str | None] = mapped_column(String(128))
    # The instant (epoch µs) every customer is evaluated at, fixed when first claimed.
    as_of: Mapped[int | None] = mapped_column(BigInteger)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(32))  # the API key id
    error: Mapped[str | None] = mapped_column(Text)
    # When the job was requested (the former activation's start).
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        # One unfinished job at a time: each re-evaluates everyone.
        Index(
            "uq_jobs_one_unfinished",
            text("(true)"),
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )
