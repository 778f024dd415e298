"""SQL of webhook subscriptions and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.db import select_list, unnest
from classifier.models import WebhookDelivery, WebhookSubscription
from classifier.models.webhooks import OPEN


async def get_subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> WebhookSubscription | None:
    return await session.get(WebhookSubscription, subscription_id)


async def list_subscriptions(
    session: AsyncSession, *, enabled_only: bool = False
) -> Sequence[WebhookSubscription]:
    stmt = select(WebhookSubscription).order_by(WebhookSubscription.created_at)
    if enabled_only:
        stmt = stmt.where(WebhookSubscription.enabled)
    return (await session.scalars(stmt)).all()


async def disable(session: AsyncSession, subscription_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_id)
        .values(enabled=False, disabled_reason=reason, updated_at=func.now())
    )


_NEW_DELIVERY = (
    ("id", "text"),
    ("subscription_id", "uuid"),
    ("change_id", "text"),
    ("customer_id", "text"),
    ("payload", "jsonb"),
    ("changed_at", "timestamptz"),
)


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed delivery, as the dispatcher sends it: the body is the stored record."""

    id: str
    subscription_id: uuid.UUID
    customer_id: str
    attempts: int
    body: str
    changed_at: datetime
    leased_until: datetime  # the claim: an outcome is stored only while it still holds


async def add_deliveries(session: AsyncSession, rows: Sequence[Sequence[Any]]) -> int:
    """Insert deliveries (columns of _NEW_DELIVERY; the payload as JSON text); one that
    exists for (subscription, change) is left as it is, so a change consumed twice is
    owed once. Returns how many are new."""
    if not rows:
        return 0
    source, params = unnest(_NEW_DELIVERY, rows)
    names = ", ".join(name for name, _ in _NEW_DELIVERY)
    result = await session.execute(
        text(
            f"INSERT INTO webhook_deliveries ({names}) SELECT {select_list(_NEW_DELIVERY)} "
            f"FROM {source} ON CONFLICT ON CONSTRAINT uq_webhook_deliveries_subscription_id "
            "DO NOTHING"
        ),
        params,
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_due(
    session: AsyncSession, subscription_id: uuid.UUID, *, limit: int, lease_seconds: float
) -> list[Due]:
    """Take up to `limit` due deliveries of a subscription, oldest first, each the oldest
    open one of its customer (order per customer), for `lease_seconds`: their next
    attempt moves to the lease's end, so a dispatcher that dies mid-send leaves them
    to be tried again then, and another dispatcher does not take them meanwhile."""
    rows = await session.execute(
        text(
            "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => :l),"
            " updated_at = now() WHERE d.id IN ("
            " SELECT o.id FROM webhook_deliveries o"
            " WHERE o.subscription_id = :s AND o.status IN ('pending', 'failed')"
            "  AND o.next_attempt_at <= now()"
            "  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e"
            "   WHERE e.subscription_id = o.subscription_id AND e.customer_id = o.customer_id"
            "    AND e.status IN ('pending', 'failed') AND e.seq < o.seq)"
            " ORDER BY o.seq LIMIT :n FOR UPDATE SKIP LOCKED)"
            " RETURNING d.id, d.subscription_id, d.customer_id, d.attempts, d.payload::text,"
            " d.changed_at, d.next_attempt_at, d.seq"
        ),
        {"s": subscription_id, "n": limit, "l": lease_seconds},
    )
    return [Due(*row[:7]) for row in sorted(rows, key=lambda r: r[7])]


async def next_due_in(session: AsyncSession) -> float | None:
    """Seconds until the earliest open delivery falls due (None: none open)."""
    seconds = await session.scalar(
        select(func.extract("epoch", func.min(WebhookDelivery.next_attempt_at) - func.now()))
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.status.in_(OPEN), WebhookSubscription.enabled)
    )
    return None if seconds is None else float(seconds)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt's outcome, to store on its delivery (next_attempt_at None: unchanged)."""

    delivery_id: str
    status: str
    status_code: int | None
    error: str | None
    latency_ms: float
    next_attempt_at: datetime | None
    leased_until: datetime


_ATTEMPT = (
    ("id", "text"),
    ("st", "text"),
    ("code", "int"),
    ("err", "text"),
    ("ms", "float8"),
    ("next", "timestamptz"),
    ("lease", "timestamptz"),
)


async def record_attempts(session: AsyncSession, attempts: Sequence[Attempt]) -> None:
    """Store attempts' outcomes, in one statement, on deliveries whose claim still holds:
    one redelivered meanwhile (made due now) or claimed again after its lease ran out
    (by another dispatcher) keeps its new state."""
    if not attempts:
        return
    source, params = unnest(
        _ATTEMPT,
        [
            (
                a.delivery_id,
                a.status,
                a.status_code,
                a.error,
                a.latency_ms,
                a.next_attempt_at,
                a.leased_until,
            )
            for a in attempts
        ],
    )
    await session.execute(
        text(
            "UPDATE webhook_deliveries d SET status = t.st, attempts = d.attempts + 1,"
            " last_status_code = t.code, last_error = t.err, latency_ms = t.ms,"
            " next_attempt_at = COALESCE(t.next, d.next_attempt_at),"
            " delivered_at = CASE WHEN t.st = 'delivered' THEN now() END, updated_at = now()"
            f" FROM {source} WHERE d.id = t.id AND d.status IN ('pending', 'failed')"
            " AND d.next_attempt_at = t.lease"
        ),
        params,
    )


async def delivery_log(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    status: str | None,
    before: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    """A subscription's deliveries, newest first."""
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.seq.desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    if before:
        stmt = stmt.where(WebhookDelivery.seq < before)
    return (await session.scalars(stmt)).all()


_AGAIN = {
    "status": "pending",
    "attempts": 0,
    "next_attempt_at": func.now(),
    "delivered_at": None,
    "updated_at": func.now(),
}


async def redeliver(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    """Queue one delivery again (same webhook-id, attempts from 0); None when unknown.
    An open delivery is only made due now."""
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(**_AGAIN)
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(stmt)).one_or_none()


async def redeliver_since(
    session: AsyncSession, subscription_id: uuid.UUID, since: datetime
) -> int:
    """Queue again every finished (delivered or dead) delivery created since `since`."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.created_at >= since,
            WebhookDelivery.status.in_(("delivered", "dead")),
        )
        .values(**_AGAIN)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def open_counts(session: AsyncSession) -> dict[str, int]:
    """Open deliveries by status (pending: never tried; failed: waiting for a retry)."""
    rows = await session.execute(
        select(WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_(OPEN))
        .group_by(WebhookDelivery.status)
    )
    counts = dict.fromkeys(OPEN, 0)
    counts.update({str(row[0]): int(row[1]) for row in rows})
    return counts
