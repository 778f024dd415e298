"""The delivery loop: sends due deliveries, signed (Standard Webhooks), and records each
attempt: delivered, a retry after a backoff, dead after the last, or the subscription
disabled on 410 Gone.

Each subscription has at most `webhook_max_in_flight` deliveries in flight and each
attempt at most `webhook_timeout_seconds`, so a slow or hanging receiver holds only its
own slots. A customer's next delivery to a subscription waits until the one before it
is delivered or dead (repository.claim_due).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from classifier.config import ClassifierSettings
from classifier.db import unit_of_work
from classifier.models import WebhookSubscription
from classifier.webhooks import repository
from classifier.webhooks.metrics import ATTEMPT_SECONDS, DELIVERIES, FAILURES, LATENCY, QUEUED
from classifier.webhooks.repository import Due
from classifier.webhooks.targets import PinnedTransport, TargetPolicy, TargetRefused

log = logging.getLogger(__name__)
USER_AGENT = "customer-classifier-webhooks/1"
QUEUE_MEASURE_SECONDS = 5.0
STOP_GRACE_SECONDS = 5.0
# Subscriptions are re-read this often: a new, changed or re-enabled one is seen
# within it (and one disabled by a 410 here at once).
SUBSCRIPTIONS_SECONDS = 1.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status_code: int | None
    error: str | None
    retry_after: float | None
    cause: str | None  # None: a 2xx

    @property
    def delivered(self) -> bool:
        return self.cause is None


def signature(subscription: WebhookSubscription, msg_id: str, at: datetime, body: str) -> str:
    """The webhook-signature header: one `v1,...` by the current secret, and one by the
    previous secret while its rotation overlap lasts."""
    keys = [subscription.secret]
    expires = subscription.previous_expires_at
    if subscription.previous_secret and expires is not None and expires > at:
        keys.append(subscription.previous_secret)
    return " ".join(Webhook(key).sign(msg_id, at, body) for key in keys)


def backoff(settings: ClassifierSettings, attempts: int) -> float | None:
    """Seconds before retry number `attempts` (1 = the first retry), jittered; None when
    the schedule is exhausted."""
    schedule = settings.webhook_retry_schedule_seconds
    if attempts > len(schedule):
        return None
    jitter = settings.webhook_retry_jitter
    return schedule[attempts - 1] * random.uniform(1 - jitter, 1 + jitter)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the receiver asked us to wait (Retry-After: seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(float(value), 0.0)
    with contextlib.suppress(TypeError, ValueError):
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    return None


class DeliveryLoop:
    def __init__(
        self,
        settings: ClassifierSettings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._client = client or httpx.AsyncClient(
            transport=PinnedTransport(TargetPolicy.of(settings)),
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,  # a redirect is an answer, not a new target
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # A claim outlives the attempt: a dispatcher that dies mid-send leaves the
        # delivery to be tried again after this.
        self._lease = settings.webhook_timeout_seconds + 5.0
        self._unsaved: list[tuple[repository.Attempt, uuid.UUID | None, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._enabled: list[WebhookSubscription] = []
        self._loaded_at = -SUBSCRIPTIONS_SECONDS

    def wake(self) -> None:
        """New deliveries were stored: look for due ones now."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        measured = 0.0
        try:
            while not stopping.is_set():
                self._wake.clear()
                idle = self._settings.webhook_poll_seconds
                try:
                    idle = min(idle, await self.dispatch_due())
                    if time.monotonic() - measured >= QUEUE_MEASURE_SECONDS:
                        measured = time.monotonic()
                        await self._measure_queue()
                except Exception:
                    log.exception("webhook delivery loop failed; retrying")
                    await asyncio.sleep(1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(idle, 0.01))
        finally:
            await self._stop_sends()
            await self._client.aclose()

    async def dispatch_due(self) -> float:
        """Start the due deliveries each subscription has room for; returns how long the
        loop may sleep (until the next one falls due, at most the poll interval).

        A subscription whose slots are all taken is looked at again when one of its
        attempts ends (it wakes the loop), so only one with room left over asks
        when the next delivery falls due.
        """
        poll = self._settings.webhook_poll_seconds
        room_left = False
        for subscription in await self._subscriptions():
            room = self._settings.webhook_max_in_flight - self._in_flight[subscription.id]
            if room <= 0:
                continue
            async with unit_of_work(self._sessions) as session:
                due = await repository.claim_due(
                    session, subscription.id, limit=room, lease_seconds=self._lease
                )
            room_left = room_left or len(due) < room
            for delivery in due:
                self._in_flight[subscription.id] += 1
                task = asyncio.create_task(self._send(subscription, delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if not room_left:
            return poll
        async with self._sessions() as session:
            due_in = await repository.next_due_in(session)
        # Due but not claimed (a customer's earlier delivery is in flight): its end wakes us.
        return poll if due_in is None or due_in <= 0 else min(due_in, poll)

    async def _subscriptions(self) -> list[WebhookSubscription]:
        """The enabled subscriptions, read again at most every SUBSCRIPTIONS_SECONDS."""
        if time.monotonic() - self._loaded_at >= SUBSCRIPTIONS_SECONDS:
            async with self._sessions() as session:
                rows = await repository.list_subscriptions(session, enabled_only=True)
            self._enabled, self._loaded_at = list(rows), time.monotonic()
        return self._enabled

    async def _send(self, subscription: WebhookSubscription, delivery: Due) -> None:
        try:
            started = time.monotonic()
            outcome = await self.attempt(subscription, delivery)
            seconds = time.monotonic() - started
            ATTEMPT_SECONDS.observe(seconds)
            await self._record(subscription, delivery, outcome, seconds * 1000)
        except Exception:
            log.exception(
                "recording delivery %s failed; it is retried after its lease", delivery.id
            )
        finally:
            self._in_flight[subscription.id] -= 1
            self._wake.set()  # room again, and maybe the customer's next one is due

    async def attempt(self, subscription: WebhookSubscription, delivery: Due) -> Outcome:
        """POST the record, signed, within the timeout; what came of it."""
        body = delivery.body
        at = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature(subscription, delivery.id, at, body),
        }
        timeout = self._settings.webhook_timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # the whole attempt, not each read
                response = await self._client.post(subscription.url, content=body, headers=headers)
        except TimeoutError:
            return Outcome(None, f"no answer within {timeout:g}s", None, "timeout")
        except httpx.TimeoutException as exc:
            return Outcome(None, f"timed out ({type(exc).__name__})", None, "timeout")
        except TargetRefused as exc:
            return Outcome(None, exc.detail, None, "refused")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], None, "connect")
        code = response.status_code
        if 200 <= code < 300:
            return Outcome(code, None, None, None)
        cause = "http_4xx" if 400 <= code < 500 else "http_5xx" if code >= 500 else "http_other"
        return Outcome(code, f"HTTP {code}", retry_after(response), cause)

    async def _record(
        self,
        subscription: WebhookSubscription,
        delivery: Due,
        outcome: Outcome,
        latency_ms: float,
    ) -> None:
        now = datetime.now(UTC)
        next_at: datetime | None = None
        if outcome.delivered:
            state, label = "delivered", "delivered"
            LATENCY.observe(max((now - delivery.changed_at).total_seconds(), 0.0))
        elif outcome.status_code == 410:
            state, label = "dead", "gone"
        else:
            wait = backoff(self._settings, delivery.attempts + 1)
            if wait is None:
                state, label = "dead", "dead"
            else:
                if outcome.retry_after is not None:  # the receiver's wish, within the schedule
                    wait = min(
                        outcome.retry_after, max(self._settings.webhook_retry_schedule_seconds)
                    )
                state, label, next_at = "failed", "retry", now + timedelta(seconds=wait)
        if outcome.cause is not None:
            FAILURES.labels(outcome.cause).inc()
        attempt = repository.Attempt(
            delivery.id,
            state,
            outcome.status_code,
            outcome.error,
            latency_ms,
            next_at,
            delivery.leased_until,
        )
        await self._store(attempt, subscription.id if label == "gone" else None)
        if label == "gone":
            self._loaded_at = -SUBSCRIPTIONS_SECONDS
        DELIVERIES.labels(label).inc()
        if label in ("dead", "gone"):
            log.warning(
                "webhook delivery %s to subscription %s is dead (%s)",
                delivery.id,
                subscription.id,
                outcome.error,
            )

    async def _store(self, attempt: repository.Attempt, gone: uuid.UUID | None) -> None:
        """Record an attempt; attempts that end while a write is under way are written
        together in the next one (one transaction for many)."""
        done = asyncio.get_running_loop().create_future()
        self._unsaved.append((attempt, gone, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_attempts())
        await done

    async def _write_attempts(self) -> None:
        while self._unsaved:
            batch, self._unsaved = self._unsaved, []
            try:
                async with unit_of_work(self._sessions) as session:
                    await repository.record_attempts(session, [a for a, _, _ in batch])
                    for gone in {g for _, g, _ in batch if g is not None}:
                        await repository.disable(session, gone, "the target answered 410 Gone")
            except Exception as exc:
                for _, _, done in batch:
                    done.set_exception(exc)
            else:
                for _, _, done in batch:
                    done.set_result(None)

    async def _measure_queue(self) -> None:
        async with self._sessions() as session:
            counts = await repository.open_counts(session)
        for status, count in counts.items():
            QUEUED.labels(status).set(count)

    async def _stop_sends(self) -> None:
        """Let attempts in flight finish (for a few seconds at most), then cancel the rest:
        their leases run out and they are sent again."""
        if self._tasks:
            grace = min(self._settings.webhook_timeout_seconds, STOP_GRACE_SECONDS)
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
