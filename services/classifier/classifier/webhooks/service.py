"""Subscription management for the API: every change is checked, then audited in the
same transaction (the caller, the request, commits)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from classifier import audit
from classifier.config import ClassifierSettings
from classifier.errors import NotFound
from classifier.models import WebhookDelivery, WebhookSubscription
from classifier.webhooks import repository
from classifier.webhooks.schemas import (
    RotateIn,
    SubscriptionIn,
    SubscriptionPatch,
    new_delivery_id,
    new_secret,
)
from classifier.webhooks.targets import TargetPolicy
from eventschemas.changes import CHANGE_SOURCE

PING_EVENT_TYPE = "webhook.ping"


def _target(subscription: WebhookSubscription) -> str:
    return f"webhook:{subscription.id}"


def _details(subscription: WebhookSubscription, **more: Any) -> dict[str, Any]:
    # The host, not the URL: a query string may carry a receiver's token.
    host = urlsplit(subscription.url).hostname
    return {"subscription_id": str(subscription.id), "host": host, **more}


async def check_url(settings: ClassifierSettings, url: str) -> str:
    """The URL when it is an allowed target (its name resolved and checked too)."""
    policy = TargetPolicy.of(settings)
    _scheme, host, port = policy.check_url(url)
    await policy.resolve(host, port)
    return url


async def get(session: AsyncSession, subscription_id: uuid.UUID) -> WebhookSubscription:
    row = await repository.get_subscription(session, subscription_id)
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return row


async def create(
    session: AsyncSession, settings: ClassifierSettings, body: SubscriptionIn, *, actor: str
) -> WebhookSubscription:
    row = WebhookSubscription(
        id=uuid.uuid4(),
        url=await check_url(settings, body.url),
        filter=body.filter.model_dump(mode="json"),
        enabled=body.enabled,
        secret=new_secret(),
        created_by=actor,
    )
    session.add(row)
    await session.flush()
    details = _details(row, filter=row.filter, enabled=row.enabled)
    await audit.record(session, actor, "webhook.create", _target(row), details)
    return row


async def update(
    session: AsyncSession,
    settings: ClassifierSettings,
    subscription_id: uuid.UUID,
    body: SubscriptionPatch,
    *,
    actor: str,
) -> WebhookSubscription:
    row = await get(session, subscription_id)
    changed: dict[str, Any] = {}
    if body.url is not None:
        row.url = await check_url(settings, body.url)
        changed["url"] = True
    if body.filter is not None:
        row.filter = changed["filter"] = body.filter.model_dump(mode="json")
    if body.enabled is not None:
        row.enabled = changed["enabled"] = body.enabled
        if body.enabled:
            row.disabled_reason = None
    await session.flush()
    await session.refresh(row)
    await audit.record(session, actor, "webhook.update", _target(row), _details(row, **changed))
    return row


async def delete(session: AsyncSession, subscription_id: uuid.UUID, *, actor: str) -> None:
    """Delete a subscription and its delivery log (nothing more is sent)."""
    row = await get(session, subscription_id)
    await audit.record(session, actor, "webhook.delete", _target(row), _details(row))
    await session.delete(row)
    await session.flush()


async def rotate_secret(
    session: AsyncSession,
    settings: ClassifierSettings,
    subscription_id: uuid.UUID,
    body: RotateIn,
    *,
    actor: str,
) -> tuple[WebhookSubscription, str]:
    """A new secret; the old one keeps signing beside it for the overlap."""
    row = await get(session, subscription_id)
    hours = (
        settings.webhook_secret_overlap_hours if body.overlap_hours is None else body.overlap_hours
    )
    secret = new_secret()
    if hours > 0:
        row.previous_secret = row.secret
        row.previous_expires_at = datetime.now(UTC) + timedelta(hours=hours)
    else:
        row.previous_secret = row.previous_expires_at = None
    row.secret = secret
    await session.flush()
    await session.refresh(row)
    details = _details(row, overlap_hours=hours)
    await audit.record(session, actor, "webhook.rotate_secret", _target(row), details)
    return row, secret


async def redeliver(session: AsyncSession, delivery_id: str, *, actor: str) -> WebhookDelivery:
    row = await repository.redeliver(session, delivery_id)
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    details = {"subscription_id": str(row.subscription_id), "delivery_id": delivery_id}
    await audit.record(
        session, actor, "webhook.redeliver", f"webhook:{row.subscription_id}", details
    )
    return row


async def redeliver_since(
    session: AsyncSession, subscription_id: uuid.UUID, since: datetime, *, actor: str
) -> int:
    row = await get(session, subscription_id)
    count = await repository.redeliver_since(session, subscription_id, since)
    details = _details(row, since=since.isoformat(), deliveries=count)
    await audit.record(session, actor, "webhook.redeliver", _target(row), details)
    return count


async def ping(session: AsyncSession, subscription_id: uuid.UUID, *, actor: str) -> WebhookDelivery:
    """Queue a `webhook.ping` delivery: signed and logged like a change, sent at once."""
    row = await get(session, subscription_id)
    ping_id = f"ping-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    payload = {
        "specversion": "1.0",
        "id": ping_id,
        "source": CHANGE_SOURCE,
        "type": PING_EVENT_TYPE,
        "time": now.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"subscription_id": str(row.id)},
    }
    delivery = WebhookDelivery(
        id=new_delivery_id(),
        subscription_id=row.id,
        change_id=ping_id,
        customer_id=f"@{ping_id}",  # its own queue: a ping waits for no customer's change
        payload=orjson.loads(orjson.dumps(payload)),
        changed_at=now,
    )
    session.add(delivery)
    await session.flush()
    await session.refresh(delivery)
    details = _details(row, delivery_id=delivery.id)
    await audit.record(session, actor, "webhook.ping", _target(row), details)
    return delivery
