"""The record published on the class-change topic, one per class change."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict


class ChangeReason(StrEnum):
    EVENT = "event"
    TIME = "time"
    SCHEME_CHANGE = "scheme_change"
    OVERRIDE = "override"
    MERGE = "merge"


class ClassChanged(BaseModel):
    """A customer moved from one class to another in one dimension."""

    model_config = ConfigDict(frozen=True)

    change_id: str
    customer_id: str
    dimension: str
    old_class: str | None
    new_class: str
    scheme_version: int
    reason: ChangeReason
    event_id: str | None
    rule: str | None = None
    occurred_at: AwareDatetime
