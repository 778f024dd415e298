"""Job resources of the API: what a job is doing, how far it got, who asked for it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from classifier.engine import from_micros
from classifier.models import Job

JobKind = Literal["activate", "recompute"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobOut(BaseModel):
    id: int
    kind: JobKind = Field(description="activate (a scheme version) or recompute (everyone).")
    version: int = Field(description="The scheme version customers are re-evaluated under.")
    previous_version: int | None = Field(description="The version active before (activate).")
    silent: bool = Field(description="No change events announced (history is still kept).")
    status: JobStatus = Field(
        description="queued (waiting for a worker), running, succeeded, failed or cancelled."
    )
    total: int = Field(description="Customers when the job was queued.")
    done: int = Field(description="Customers re-evaluated so far.")
    changes: int = Field(description="Class changes made so far.")
    as_of: datetime | None = Field(
        description="The instant everyone is evaluated at; fixed when a worker first claims it."
    )
    claimed_by: str | None = Field(description="The worker running (or last running) the job.")
    attempts: int = Field(description="How many times a worker claimed it (>1: resumed).")
    heartbeat_at: datetime | None
    cancel_requested_at: datetime | None
    created_by: str | None = Field(description="The id of the API key that asked for it.")
    error: str | None
    started_at: datetime = Field(description="When the job was requested.")
    claimed_at: datetime | None = Field(description="When a worker last claimed it.")
    finished_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobOut]


class RecomputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["recompute"] = "recompute"
    silent: bool = Field(
        default=False, description="Re-evaluate without emitting change events (history kept)."
    )


def job_out(row: Job) -> JobOut:
    return JobOut(
        id=row.id,
        kind=row.kind,
        version=row.version,
        previous_version=row.previous_version,
        silent=row.silent,
        status=row.status,
        total=row.total,
        done=row.done,
        changes=row.changes,
        as_of=from_micros(row.as_of) if row.as_of is not None else None,
        claimed_by=row.claimed_by,
        attempts=row.attempts,
        heartbeat_at=row.heartbeat_at,
        cancel_requested_at=row.cancel_requested_at,
        created_by=row.created_by,
        error=row.error,
        started_at=row.started_at,
        claimed_at=row.claimed_at,
        finished_at=row.finished_at,
    )
