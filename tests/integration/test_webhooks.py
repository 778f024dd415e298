"""Outbound webhooks on real Kafka and PostgreSQL, delivered to real HTTP receivers."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook, WebhookVerificationError

from classifier.app import create_app
from classifier.config import ClassifierSettings
from classifier.models import AuditEntry, WebhookDelivery
from classifier.webhooks.dispatcher import run_dispatcher
from eventschemas.changes import ChangeReason, ClassChanged
from eventschemas.events import OrderPlaced
from tests.kafka_helpers import eventually, publish_raw, read_topic
from tests.processes import service_env, start
from tests.webhook_receiver import Receiver, serve

pytestmark = pytest.mark.integration
_seq = itertools.count()


def change(
    customer: str, dimension: str, old: str | None, new: str, reason: str = "event"
) -> tuple[bytes, bytes]:
    """A class-change record as the relay puts it on the topic (key, CloudEvent bytes)."""
    record = ClassChanged(
        change_id=f"ch-{uuid.uuid4().hex[:12]}-{next(_seq)}",
        customer_id=customer,
        dimension=dimension,
        old_class=old,
        new_class=new,
        scheme_version=1,
        reason=ChangeReason(reason),
        event_id=None,
        occurred_at=datetime.now(UTC),
    )
    return customer.encode(), record.to_envelope().to_bytes()


@pytest.fixture
def hook_settings(classifier_settings: ClassifierSettings, unique: str) -> ClassifierSettings:
    """Loopback allowed (http too), short retries without jitter, a group of this test's."""
    return classifier_settings.model_copy(
        update={
            "webhook_allow_hosts": "127.0.0.1",
            "webhook_retry_schedule_seconds": [0.2, 0.2, 0.2, 0.2],
            "webhook_retry_jitter": 0.0,
            "webhook_timeout_seconds": 2.0,
            "webhook_poll_seconds": 0.2,
            "webhook_max_in_flight": 4,
            "webhook_consumer_group": f"test-{unique}-webhooks",
            "api_key_cache_seconds": 0,
        }
    )


@pytest.fixture
async def admin(
    hook_settings: ClassifierSettings, keys: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The classifier API in process with the loopback allowlist, as the admin key."""
    app = create_app(hook_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {keys['admin']}"},
        ) as client,
    ):
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve(Receiver()) as running:
        yield running


@pytest.fixture
async def dispatcher(hook_settings: ClassifierSettings) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(hook_settings, stopping))
    yield
    stopping.set()
    await asyncio.wait_for(task, timeout=30)


async def subscribe(
    admin: httpx.AsyncClient, receiver: Receiver, path: str, **filter_: Any
) -> dict[str, Any]:
    answer = await admin.post(
        "/v1/subscriptions", json={"url": receiver.url(path), "filter": filter_}
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    receiver.secrets[path] = [created["secret"]]
    return created


async def test_retried_until_accepted_once_with_one_webhook_id(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    dispatcher: None,
    hook_settings: ClassifierSettings,
) -> None:
    sub = await subscribe(admin, receiver, "/flaky/a")
    records = [change(f"c-{i}", "abc_tier", "C", "A") for i in range(3)]
    await publish_raw(
        hook_settings.kafka_bootstrap_servers, hook_settings.class_changes_topic, records
    )

    await eventually(lambda: _ready(len(receiver.accepted["/flaky/a"]) == 3), within=30)
    await asyncio.sleep(1)  # nothing more arrives after the accepted one
    accepted = receiver.accepted["/flaky/a"]
    assert not receiver.rejected
    ids = {d.webhook_id for d in accepted}
    assert len(ids) == 3
    for webhook_id in ids:  # 3 failures, then the one accepted attempt, all with one id
        assert receiver.attempts["/flaky/a"].count(webhook_id) == 4
    sent = {d.payload["id"] for d in accepted}
    assert sent == {orjson_id(value) for _, value in records}
    assert all(d.payload["type"] == "class.changed" for d in accepted)

    # A tampered body or an old timestamp fails the receiver's check.
    one = accepted[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(sub["secret"]).verify(one.body.replace(b"abc_tier", b"abc_tieR"), one.headers)
    stale = {**one.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(WebhookVerificationError):
        Webhook(sub["secret"]).verify(one.body, stale)

    log = (await admin.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()["deliveries"]
    assert {(d["status"], d["attempts"], d["last_status_code"]) for d in log} == {
        ("delivered", 4, 200)
    }
    assert {d["id"] for d in log} == ids


def orjson_id(value: bytes) -> str:
    import orjson

    return str(orjson.loads(value)["id"])


async def _ready(condition: bool) -> bool:
    return condition


async def test_filter_abc_tier_entering_a(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    dispatcher: None,
    hook_settings: ClassifierSettings,
) -> None:
    await subscribe(admin, receiver, "/ok/entering-a", dimensions=["abc_tier"], entered=["A"])
    await subscribe(admin, receiver, "/ok/all")
    records = [
        change("c-1", "abc_tier", None, "A"),
        change("c-2", "abc_tier", "A", "B"),
        change("c-3", "abc_tier", "B", "A", reason="time"),
        change("c-4", "value", "low", "A"),
        change("c-5", "abc_tier", "C", "B"),
    ]
    await publish_raw(
        hook_settings.kafka_bootstrap_servers, hook_settings.class_changes_topic, records
    )

    await eventually(lambda: _ready(len(receiver.accepted["/ok/all"]) == 5))
    await asyncio.sleep(0.5)
    got = {d.payload["data"]["customer_id"] for d in receiver.accepted["/ok/entering-a"]}
    assert got == {"c-1", "c-3"}
    assert len(receiver.accepted["/ok/entering-a"]) == 2


async def test_a_hanging_receiver_delays_neither_others_nor_classification(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    hook_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    worker: None,
) -> None:
    settings = hook_settings.model_copy(update={"webhook_timeout_seconds": 60.0})
    stopping = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(settings, stopping))
    try:
        await subscribe(admin, receiver, "/hang/slow")
        await subscribe(admin, receiver, "/ok/fast")
        records = [change(f"c-{i}", "abc_tier", "C", "B") for i in range(20)]
        bootstrap, topic = settings.kafka_bootstrap_servers, settings.class_changes_topic
        started = time.monotonic()
        await publish_raw(bootstrap, topic, records)
        await eventually(lambda: _ready(len(receiver.accepted["/ok/fast"]) == 20), within=10)
        fast_seconds = time.monotonic() - started
        # The hanging receiver holds its 4 slots and no more; none of them finished.
        assert len(receiver.attempts["/hang/slow"]) == settings.webhook_max_in_flight == 4
        assert fast_seconds < 5, fast_seconds

        # Classification goes on: an order becomes class changes on the topic, and the
        # healthy subscriber receives them.
        placed = OrderPlaced(
            customer_id="c-order",
            order_id="o-1",
            amount=Decimal("250.00"),
            currency="USD",
            amount_base=Decimal("250.00"),
            base_currency="USD",
            placed_at=datetime.now(UTC),
        ).to_envelope("test")
        await publish_raw(bootstrap, settings.activity_topic, [(b"c-order", placed.to_bytes())])
        await eventually(
            lambda: _ready(
                any(
                    d.payload["data"]["customer_id"] == "c-order"
                    for d in receiver.accepted["/ok/fast"]
                )
            ),
            within=15,
        )
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=90)


async def test_a_killed_dispatcher_loses_no_delivery(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    hook_settings: ClassifierSettings,
    tmp_path: Path,
) -> None:
    await subscribe(admin, receiver, "/ok/kill")
    env = service_env(
        hook_settings,
        CLASSIFIER_WEBHOOK_CONSUMER_GROUP=hook_settings.webhook_consumer_group,
        CLASSIFIER_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        CLASSIFIER_WEBHOOK_RETRY_SCHEDULE_SECONDS="[0.2, 0.2, 0.2]",
        CLASSIFIER_WEBHOOK_POLL_SECONDS="0.2",
        CLASSIFIER_WEBHOOK_TIMEOUT_SECONDS="2",
        CLASSIFIER_WEBHOOK_METRICS_PORT="0",
    )
    command = [str(Path(sys.executable).parent / "classifier"), "dispatcher"]
    records = [change(f"c-{i % 7}", "abc_tier", "C", "B") for i in range(60)]
    bootstrap, topic = hook_settings.kafka_bootstrap_servers, hook_settings.class_changes_topic
    log = tmp_path / "dispatcher.log"
    first = start(command, env, log)
    try:
        await publish_raw(bootstrap, topic, records[:30])
        await eventually(lambda: _ready(len(receiver.accepted["/ok/kill"]) >= 5), within=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        await publish_raw(bootstrap, topic, records[30:])
        second = start(command, env, log)
        try:
            # Claimed but unanswered deliveries come back after their lease (timeout + 5 s).
            await eventually(
                lambda: _ready(len({_change_of(d) for d in receiver.accepted["/ok/kill"]}) == 60),
                within=45,
            )
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    by_change: dict[str, set[str]] = {}
    for d in receiver.accepted["/ok/kill"]:
        by_change.setdefault(_change_of(d), set()).add(d.webhook_id)
    assert len(by_change) == 60
    assert all(len(ids) == 1 for ids in by_change.values())  # a resend keeps its webhook-id
    assert not receiver.rejected


def _change_of(delivery: Any) -> str:
    return str(delivery.payload["data"]["change_id"])


async def test_targets_inside_are_refused_without_the_allowlist(
    classifier_settings: ClassifierSettings, keys: dict[str, str]
) -> None:
    app = create_app(classifier_settings.model_copy(update={"api_key_cache_seconds": 0}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {keys['admin']}"},
        ) as client,
    ):
        for url in (
            "https://127.0.0.1/hook",
            "http://127.0.0.1:8080/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/hook",
            "https://[::1]/hook",
            "https://10.1.2.3/hook",
            "http://example.com/hook",
            "ftp://example.com/hook",
            "not a url",
        ):
            answer = await client.post("/v1/subscriptions", json={"url": url})
            assert answer.status_code == 422, (url, answer.text)
            assert answer.json()["status"] == 422
        read_only = await client.get(
            "/v1/subscriptions", headers={"Authorization": f"Bearer {keys['read']}"}
        )
        assert read_only.status_code == 403


async def test_a_name_resolving_inside_is_refused_at_connect(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    hook_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Saved while `localhost` was allowlisted; the dispatcher's allowlist does not have
    it, so the address the name resolves to (/etc/hosts) is checked at connect time and
    refused before any connection is made."""
    allowed = hook_settings.model_copy(update={"webhook_allow_hosts": "localhost"})
    strict = hook_settings.model_copy(update={"webhook_allow_hosts": ""})
    app = create_app(allowed)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", headers=admin.headers
        ) as client,
    ):
        url = f"https://localhost:{receiver.port}/ok/rebind"
        answer = await client.post("/v1/subscriptions", json={"url": url})
        assert answer.status_code == 201, answer.text
    stopping = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(strict, stopping))
    try:
        await publish_raw(
            strict.kafka_bootstrap_servers,
            strict.class_changes_topic,
            [change("c-1", "abc_tier", "C", "A")],
        )

        async def refused() -> WebhookDelivery | None:
            async with sessions() as session:
                row = await session.scalar(select(WebhookDelivery))
            return row if row is not None and row.attempts >= 1 else None

        row = await eventually(refused)
        assert "not a public address" in (row.last_error or "")
        assert "localhost is (or resolves to)" in (row.last_error or "")
        assert row.last_status_code is None
        assert receiver.attempts["/ok/rebind"] == []
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=30)


async def test_admin_operations_rotate_ping_redeliver_gone_and_audit(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    dispatcher: None,
    hook_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sub = await subscribe(admin, receiver, "/ok/ops")
    sid = sub["id"]
    assert "secret" not in (await admin.get(f"/v1/subscriptions/{sid}")).json()

    # Rotation: during the overlap, the old and the new secret each verify a delivery.
    rotated = (await admin.post(f"/v1/subscriptions/{sid}/rotate-secret")).json()
    assert rotated["secret"] != sub["secret"]
    receiver.secrets["/ok/ops"] = [rotated["secret"]]
    ping = await admin.post(f"/v1/subscriptions/{sid}/ping")
    assert ping.status_code == 202
    await eventually(lambda: _ready(len(receiver.accepted["/ok/ops"]) == 1))
    first = receiver.accepted["/ok/ops"][0]
    assert first.payload["type"] == "webhook.ping"
    Webhook(sub["secret"]).verify(first.body, first.headers)  # the old one too

    # Redelivery: the same webhook-id again; then everything since an instant.
    again = await admin.post(f"/v1/deliveries/{ping.json()['id']}/redeliver")
    assert again.status_code == 202
    await eventually(lambda: _ready(len(receiver.accepted["/ok/ops"]) == 2))
    assert receiver.accepted["/ok/ops"][1].webhook_id == first.webhook_id

    # The receiver has it; the dispatcher stores the outcome just after (only a
    # finished delivery is queued again).
    async def stored_as_delivered() -> bool:
        log = await admin.get(f"/v1/subscriptions/{sid}/deliveries")
        return [d["status"] for d in log.json()["deliveries"]] == ["delivered"]

    await eventually(stored_as_delivered)
    since = await admin.post(
        f"/v1/subscriptions/{sid}/redeliver", json={"since": "2000-01-01T00:00:00Z"}
    )
    assert since.json() == {"deliveries": 1}
    await eventually(lambda: _ready(len(receiver.accepted["/ok/ops"]) == 3))
    assert (await admin.post("/v1/deliveries/msg_nope/redeliver")).status_code == 404

    # 410 Gone: the delivery is dead and the subscription disabled.
    gone = await subscribe(admin, receiver, "/gone/x")
    await admin.post(f"/v1/subscriptions/{gone['id']}/ping")

    async def disabled() -> bool:
        return not (await admin.get(f"/v1/subscriptions/{gone['id']}")).json()["enabled"]

    await eventually(disabled)
    got = (await admin.get(f"/v1/subscriptions/{gone['id']}")).json()
    assert "410" in got["disabled_reason"]
    log = (await admin.get(f"/v1/subscriptions/{gone['id']}/deliveries")).json()
    assert [(d["status"], d["last_status_code"]) for d in log["deliveries"]] == [("dead", 410)]

    patched = await admin.patch(
        f"/v1/subscriptions/{sid}", json={"filter": {"dimensions": ["value"]}}
    )
    assert patched.json()["filter"]["dimensions"] == ["value"]
    assert (
        await admin.patch(f"/v1/subscriptions/{sid}", json={"url": "https://10.0.0.1/"})
    ).status_code == 422
    assert (await admin.delete(f"/v1/subscriptions/{sid}")).status_code == 204
    assert (await admin.get(f"/v1/subscriptions/{sid}")).status_code == 404

    async with sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        secrets_in_audit = await session.scalar(
            text("SELECT count(*) FROM audit_log WHERE details::text LIKE '%whsec_%'")
        )
    assert actions.count("webhook.create") == 2
    for action in (
        "webhook.rotate_secret",
        "webhook.ping",
        "webhook.redeliver",
        "webhook.update",
        "webhook.delete",
    ):
        assert action in actions
    assert secrets_in_audit == 0


async def test_changes_of_the_topic_before_a_subscription_are_not_sent(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    hook_settings: ClassifierSettings,
) -> None:
    bootstrap, topic = hook_settings.kafka_bootstrap_servers, hook_settings.class_changes_topic
    await publish_raw(bootstrap, topic, [change("old", "abc_tier", "C", "A")])
    await asyncio.sleep(0.05)
    await subscribe(admin, receiver, "/ok/new")
    await publish_raw(bootstrap, topic, [change("new", "abc_tier", "C", "A")])
    assert len(await read_topic(bootstrap, topic, expected=2)) == 2
    stopping = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(hook_settings, stopping))
    try:
        await eventually(lambda: _ready(len(receiver.accepted["/ok/new"]) == 1))
        await asyncio.sleep(0.5)
        assert [d.payload["subject"] for d in receiver.accepted["/ok/new"]] == ["new"]
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=30)


async def test_an_outcome_is_stored_only_while_its_claim_holds(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A delivery redelivered while an attempt is in flight keeps its new state: the late
    outcome of the old attempt is dropped (and so is that of a dispatcher whose lease ran
    out and whose delivery another one claimed again)."""
    from classifier.models import WebhookSubscription
    from classifier.webhooks import repository

    sid = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(
            WebhookSubscription(id=sid, url="https://x.example", secret="s", created_by="t")
        )
        await session.flush()
        now = datetime.now(UTC)
        rows = [(f"msg_{i}", sid, f"ch-{i}", f"c-{i}", '{"id": 1}', now) for i in range(2)]
        assert await repository.add_deliveries(session, rows) == 2
        assert await repository.add_deliveries(session, rows) == 0  # consumed again: no-op
    async with sessions() as session, session.begin():
        first, second = await repository.claim_due(session, sid, limit=5, lease_seconds=30)
    async with sessions() as session, session.begin():
        await repository.redeliver(session, first.id)

    def outcome(due: repository.Due) -> repository.Attempt:
        return repository.Attempt(due.id, "delivered", 200, None, 5.0, None, due.leased_until)

    async with sessions() as session, session.begin():
        await repository.record_attempts(session, [outcome(first), outcome(second)])
    async with sessions() as session:
        found = await session.execute(select(WebhookDelivery.id, WebhookDelivery.status))
        states = {row[0]: row[1] for row in found}
    assert states == {first.id: "pending", second.id: "delivered"}
