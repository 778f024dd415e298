"""Webhook resources of the API, the subscription filter and its matching, secrets."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from classifier.models import WebhookDelivery, WebhookSubscription
from eventschemas.changes import ChangeReason

DeliveryStatus = Literal["pending", "failed", "delivered", "dead"]
Names = list[str]


class ChangeFilter(BaseModel):
    """Which class changes a subscription receives; an empty or absent list: any.

    A change matches when its dimension and reason are among those listed, and,
    when `entered` or `left` is given, it enters one of `entered` or leaves one of
    `left` (class names; list `dimensions` to say of which dimension).
    """

    model_config = ConfigDict(extra="forbid")

    dimensions: list[str] = Field(default_factory=list, max_length=50)
    entered: list[str] = Field(default_factory=list, max_length=50)
    left: list[str] = Field(default_factory=list, max_length=50)
    reasons: list[ChangeReason] = Field(default_factory=list, max_length=10)

    def matches(self, change: Mapping[str, Any]) -> bool:
        """True when the ClassChanged record (the CloudEvent's `data`) passes the filter."""
        if self.dimensions and change.get("dimension") not in self.dimensions:
            return False
        if self.reasons and change.get("reason") not in self.reasons:
            return False
        if self.entered or self.left:
            return change.get("new_class") in self.entered or (
                change.get("old_class") is not None and change.get("old_class") in self.left
            )
        return True


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https://... (http only for allowlisted hosts)")
    filter: ChangeFilter = Field(default_factory=ChangeFilter)
    enabled: bool = True


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    filter: ChangeFilter | None = None
    enabled: bool | None = Field(
        default=None, description="true re-enables a subscription disabled by a 410 Gone too."
    )


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: float | None = Field(
        default=None,
        ge=0,
        le=24 * 30,
        description="How long the old secret still signs beside the new one "
        "(default CLASSIFIER_WEBHOOK_SECRET_OVERLAP_HOURS; 0: at once).",
    )


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    filter: ChangeFilter
    enabled: bool
    disabled_reason: str | None = Field(description="Why it stopped, e.g. the target's 410.")
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the rotated-out secret still signs (None: no overlap)."
    )
    created_by: str
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret (whsec_...): shown only now.")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class SecretOut(BaseModel):
    secret: str = Field(description="The new signing secret (whsec_...): shown only now.")
    previous_secret_expires_at: datetime | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The webhook-id header: the same on every attempt.")
    subscription_id: uuid.UUID
    change_id: str
    status: DeliveryStatus = Field(
        description="pending (not tried yet), failed (a retry is due at next_attempt_at), "
        "delivered, dead (no more attempts)."
    )
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    latency_ms: float | None = Field(description="The last attempt's duration.")
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page.")


class RedeliverSince(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="Deliveries created at or after this instant.")


class Redelivered(BaseModel):
    deliveries: int = Field(description="Deliveries queued again (same webhook-ids).")


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: whsec_ and 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_delivery_id() -> str:
    return "msg_" + uuid.uuid4().hex


def subscription_out(row: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=row.id,
        url=row.url,
        filter=ChangeFilter.model_validate(row.filter),
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        previous_secret_expires_at=row.previous_expires_at if row.previous_secret else None,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        subscription_id=row.subscription_id,
        change_id=row.change_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status in ("pending", "failed") else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        latency_ms=row.latency_ms,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )
