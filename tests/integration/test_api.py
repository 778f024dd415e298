"""The classifier API against the real database (and the real broker for the feed)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.app import create_app
from classifier.auth import create_key, hash_key, revoke_key
from classifier.changes.relay import OutboxRelay
from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.customers.schemas import ClassesAsOfOut, HistoryOut
from classifier.engine import default_scheme_text
from classifier.jobs.runner import JobRunner
from classifier.metrics import API_REGISTRY as REGISTRY
from classifier.models import ApiKey, ClassChange, Customer
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import OrderPlaced
from tests.kafka_helpers import eventually

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def order(customer: str, days_ago: float, amount: str = "100") -> OrderPlaced:
    return OrderPlaced(
        customer_id=customer,
        order_id=f"{customer}-o-{days_ago}",
        amount=Decimal(amount),
        currency="USD",
        amount_base=Decimal(amount),
        base_currency="USD",
        placed_at=NOW - timedelta(days=days_ago),
    )


@pytest.fixture
async def seeded(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[[list[OrderPlaced]], Awaitable[None]]:
    await ensure_active_scheme(sessions)
    processor = BatchProcessor(sessions, SchemeCache())

    async def apply(events: list[OrderPlaced]) -> None:
        await processor.process([Delivery(e.to_envelope("test"), e, partition=0) for e in events])
        # What the worker's scheduler does next: bring everyone up to now.
        while await processor.review_due(int(time.time() * 1e6), 1000):
            pass

    return apply


@pytest.fixture
async def keys(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    keys = {}
    for scope in ("read", "admin"):
        keys[f"{scope}_id"], keys[scope] = await create_key(sessions, f"test-{scope}", scope)
    return keys


@pytest.fixture
async def api(
    classifier_settings: ClassifierSettings, keys: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(classifier_settings.model_copy(update={"api_key_cache_seconds": 0}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://api",
            headers={"Authorization": f"Bearer {keys['admin']}"},
        ) as client:
            yield client


@pytest.fixture
async def frozen_api(
    classifier_settings: ClassifierSettings, keys: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API reading at one instant (a decaying score moves between two reads otherwise)."""
    frozen = {"clock_frozen_at": datetime.now(UTC) + timedelta(hours=1)}
    app = create_app(classifier_settings.model_copy(update=frozen))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"X-API-Key": keys["read"]},
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


async def test_keys_scopes_and_revocation(
    api: httpx.AsyncClient, keys: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    read = {"X-API-Key": keys["read"]}
    assert (await api.get("/v1/classes/counts", headers={"Authorization": ""})).status_code == 401
    assert (await api.get("/v1/classes/counts", headers=read)).status_code == 200
    forbidden = await api.post(
        "/v1/schemes", content=b"x: 1", headers={**read, "content-type": "application/yaml"}
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["type"].endswith("forbidden")
    assert await revoke_key(sessions, keys["read_id"])
    assert (await api.get("/v1/classes/counts", headers=read)).status_code == 401
    async with sessions() as session:  # only the hash is stored
        hashes = set(await session.scalars(select(ApiKey.key_hash)))
    assert len(hashes) == 2
    assert keys["read"] not in hashes
    assert hash_key(keys["read"]) in hashes


async def test_bulk_lookup_reports_unknown_ids_and_caps_the_size(
    api: httpx.AsyncClient, seeded: Callable[[list[OrderPlaced]], Awaitable[None]]
) -> None:
    await seeded([order("c-1", 3), order("c-2", 400)])

    response = await api.post("/v1/customers:lookup", json={"ids": ["c-2", "nobody", "c-1", "c-2"]})
    too_many = await api.post("/v1/customers:lookup", json={"ids": [f"x{i}" for i in range(1001)]})

    assert response.status_code == 200
    body = response.json()
    assert [c["id"] for c in body["customers"]] == ["c-2", "c-1"]
    assert body["unknown"] == ["nobody"]
    classes = {c["id"]: c["classes"]["purchase_behavior"]["class"] for c in body["customers"]}
    assert classes == {"c-1": "occasional", "c-2": "churned"}
    assert too_many.status_code == 400
    assert "at most 1000" in too_many.json()["detail"]


async def test_overrides_history_and_as_of_across_several_changes(
    api: httpx.AsyncClient, seeded: Callable[[list[OrderPlaced]], Awaitable[None]]
) -> None:
    await seeded([order("c-1", 3)])
    t0 = datetime.now(UTC)
    await asyncio.sleep(0.05)
    set_a = await api.put(
        "/v1/customers/c-1/overrides/abc_tier", json={"class": "A", "reason": "strategic"}
    )
    await asyncio.sleep(0.05)
    t1 = datetime.now(UTC)
    await asyncio.sleep(0.05)
    removed = await api.delete("/v1/customers/c-1/overrides/abc_tier")
    await asyncio.sleep(0.05)
    t2 = datetime.now(UTC)

    assert set_a.status_code == 200, set_a.text
    assert set_a.json()["classes"]["abc_tier"]["class"] == "A"
    assert set_a.json()["classes"]["abc_tier"]["rule"] == "override"
    assert set_a.json()["overrides"]["abc_tier"]["reason"] == "strategic"
    original = removed.json()["classes"]["abc_tier"]["class"]
    assert original != "A"
    assert removed.json()["overrides"] == {}

    async def tier_at(at: datetime) -> str:
        r = await api.get("/v1/customers/c-1/classes", params={"as_of": at.isoformat()})
        assert r.status_code == 200, r.text
        return str(r.json()["classes"]["abc_tier"]["class"])

    assert [await tier_at(t) for t in (t0, t1, t2)] == [original, "A", original]
    history = (await api.get("/v1/customers/c-1/history", params={"dimension": "abc_tier"})).json()
    periods = [(p["class"], p["reason"]) for p in history["periods"]]
    assert periods == [(original, "event"), ("A", "override"), (original, "override")]
    assert history["periods"][0]["valid_to"] == history["periods"][1]["valid_from"]

    # The answers are built as bytes on the read pool: they are what the documented
    # response models would give.
    whole = await api.get("/v1/customers/c-1/history")
    assert whole.json() == HistoryOut.model_validate(whole.json()).model_dump(
        mode="json", by_alias=True
    )
    assert {p["dimension"] for p in whole.json()["periods"]} >= {"abc_tier", "value"}
    assert (
        len((await api.get("/v1/customers/c-1/history", params={"limit": 2})).json()["periods"])
        == 2
    )
    for as_of in (t1.isoformat(), "now", None):
        at = await api.get("/v1/customers/c-1/classes", params={"as_of": as_of} if as_of else {})
        assert at.json() == ClassesAsOfOut.model_validate(at.json()).model_dump(
            mode="json", by_alias=True
        )
    # Plain history and as-of reads are answered without the framework's routing
    # (customers/fast.py); any other parameter (even one the route ignores, or the
    # default limit given) goes to the route. The two answer alike.
    routed = await api.get("/v1/customers/c-1/history", params={"limit": 1000})
    assert whole.json() == routed.json()
    for at in (t0, t1, t2):
        plain = await api.get("/v1/customers/c-1/classes", params={"as_of": at.isoformat()})
        extra = {"as_of": at.isoformat(), "unused": "1"}
        assert plain.json() == (await api.get("/v1/customers/c-1/classes", params=extra)).json()
    for wrong in ("yesterday", "", "1700000000"):  # the route's own 422, whichever path
        refused = await api.get("/v1/customers/c-1/classes", params={"as_of": wrong})
        assert refused.status_code == 422, (wrong, refused.text)
    # Before the first event: a customer, with no class yet.
    before = await api.get("/v1/customers/c-1/classes", params={"as_of": "2001-01-01T00:00:00Z"})
    assert before.status_code == 200
    assert before.json()["classes"] == {}
    for path in ("/v1/customers/nobody/history", "/v1/customers/nobody/classes"):
        missing = await api.get(path)
        assert missing.status_code == 404
        assert "nobody" in missing.json()["detail"]
    nul = await api.get("/v1/customers/c%001/history")
    assert nul.status_code == 400, nul.text

    bad_class = await api.put(
        "/v1/customers/c-1/overrides/abc_tier", json={"class": "Z", "reason": "x"}
    )
    bad_dim = await api.put("/v1/customers/c-1/overrides/nope", json={"class": "A", "reason": "x"})
    nobody = await api.put(
        "/v1/customers/nobody/overrides/abc_tier", json={"class": "A", "reason": "x"}
    )
    assert (bad_class.status_code, bad_dim.status_code, nobody.status_code) == (400, 404, 404)


async def test_an_expired_override_stops_applying_by_itself(
    api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await seeded([order("c-1", 3)])
    expires = datetime.now(UTC) + timedelta(seconds=1)
    response = await api.put(
        "/v1/customers/c-1/overrides/purchase_behavior",
        json={"class": "regular", "reason": "trial", "expires_at": expires.isoformat()},
    )
    assert response.json()["classes"]["purchase_behavior"]["class"] == "regular"
    assert response.json()["next_review_at"] == expires.isoformat().replace("+00:00", "Z")

    # The worker's scheduler reviews due customers; it needs no word from the API.
    processor = BatchProcessor(sessions, SchemeCache())
    await asyncio.sleep(1.1)
    changes = await processor.review_due(int(time.time() * 1e6), 100)

    assert [(c.dimension, c.new_class, c.reason.value) for c in changes] == [
        ("purchase_behavior", "occasional", "time")
    ]
    after = (await api.get("/v1/customers/c-1")).json()
    assert after["classes"]["purchase_behavior"]["class"] == "occasional"
    assert after["overrides"]["purchase_behavior"]["active"] is False


async def test_members_pages_are_stable_while_classes_change(
    api: httpx.AsyncClient, seeded: Callable[[list[OrderPlaced]], Awaitable[None]]
) -> None:
    await seeded([order(f"m-{i:02}", 3) for i in range(25)] + [order("z-old", 500)])
    url = "/v1/classes/purchase_behavior/occasional/members"

    first = (await api.get(url, params={"limit": 10})).json()
    # Between pages: one customer already listed leaves, one not yet listed leaves.
    for cid in ("m-03", "m-17"):
        await api.put(
            f"/v1/customers/{cid}/overrides/purchase_behavior",
            json={"class": "regular", "reason": "moved"},
        )
    rest: list[str] = []
    cursor = first["next_cursor"]
    while cursor:
        page = (await api.get(url, params={"limit": 10, "cursor": cursor})).json()
        rest += [m["customer_id"] for m in page["members"]]
        cursor = page["next_cursor"]

    listed = [m["customer_id"] for m in first["members"]] + rest
    assert len(listed) == len(set(listed))
    expected = {f"m-{i:02}" for i in range(25)} - {"m-17"}
    assert set(listed) == expected  # m-03 was listed before it left; nobody else skipped

    filtered = await api.get(
        "/v1/classes/purchase_behavior/regular/members",
        params=[("where", "lifecycle_stage:won")],
    )
    assert sorted(m["customer_id"] for m in filtered.json()["members"]) == ["m-03", "m-17"]
    none = await api.get(url, params=[("where", "purchase_behavior:churned")])
    assert none.json()["members"] == []
    bad = await api.get(url, params=[("where", "no-colon")])
    assert bad.status_code == 400


async def test_counts_and_flows(
    api: httpx.AsyncClient, seeded: Callable[[list[OrderPlaced]], Awaitable[None]]
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    await seeded([order("f-1", 3), order("f-2", 3), order("f-3", 500)])
    await api.put(
        "/v1/customers/f-1/overrides/purchase_behavior", json={"class": "regular", "reason": "x"}
    )
    counts = (await api.get("/v1/classes/counts", params={"dimension": "purchase_behavior"})).json()
    until = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    flows = await api.get(
        "/v1/classes/purchase_behavior/flows", params={"since": start.isoformat(), "until": until}
    )
    since_ever = await api.get(
        "/v1/classes/purchase_behavior/flows",
        params={"since": (NOW - timedelta(days=600)).isoformat(), "until": until},
    )
    backwards = await api.get(
        "/v1/classes/purchase_behavior/flows",
        params={"since": until, "until": start.isoformat()},  # until < since
    )

    assert {c["class"]: c["count"] for c in counts["dimensions"]["purchase_behavior"]} == {
        "regular": 1,
        "occasional": 1,
        "churned": 1,
    }
    # Changes count at the instant they happened (the orders' times, the churn date).
    assert {(f["from"], f["to"]): f["count"] for f in flows.json()["flows"]} == {
        ("occasional", "regular"): 1,
    }
    assert {(f["from"], f["to"]): f["count"] for f in since_ever.json()["flows"]} == {
        (None, "occasional"): 3,
        ("occasional", "churned"): 1,
        ("occasional", "regular"): 1,
    }
    assert backwards.status_code == 400


async def relay_all(
    settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        relay = OutboxRelay(settings, sessions, producer, leading=True)
        while await relay.relay_once():
            pass
    finally:
        await producer.stop()


async def test_change_feed_pages_and_sse_resume_without_gaps(
    api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await seeded([order(f"s-{i}", 3) for i in range(4)])
    await relay_all(classifier_settings, sessions)
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(ClassChange))
    assert total is not None
    assert total >= 4 * 9

    seen: list[int] = []
    cursor = 0
    while True:
        page = (await api.get("/v1/changes", params={"after": cursor, "limit": 7})).json()
        if not page["changes"]:
            break
        seen += [c["id"] for c in page["changes"]]
        cursor = page["next_cursor"]
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == total

    params = {"dimension": "purchase_behavior", "class": "occasional", "limit": 100}
    filtered = (await api.get("/v1/changes", params=params)).json()
    assert {c["customer_id"] for c in filtered["changes"]} == {f"s-{i}" for i in range(4)}

    # A client that saw the first 10 reconnects with Last-Event-ID and gets the rest.
    more = await api.get(
        "/v1/changes/stream",
        params={"max_events": total - 10},
        headers={"Last-Event-ID": str(seen[9])},
    )
    assert more.headers["content-type"].startswith("text/event-stream")
    ids = [int(line[4:]) for line in more.text.splitlines() if line.startswith("id: ")]
    assert ids == seen[10:]
    assert "event: class_changed" in more.text

    # Changes announced after the stream opened arrive live.
    async def live() -> httpx.Response:
        return await api.get(
            "/v1/changes/stream", params={"max_events": 9}, headers={"Last-Event-ID": str(seen[-1])}
        )

    waiting = asyncio.create_task(live())
    await asyncio.sleep(0.3)
    await seeded([order("s-late", 2)])
    await relay_all(classifier_settings, sessions)
    late = await asyncio.wait_for(waiting, timeout=20)
    late_ids = [int(line[4:]) for line in late.text.splitlines() if line.startswith("id: ")]
    assert len(late_ids) == 9
    assert min(late_ids) > seen[-1]
    assert '"customer_id":"s-late"' in late.text


@pytest.fixture
async def job_runner(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[JobRunner]:
    """The worker's job runner (activations run there, not in the API), in this process."""
    stopping = asyncio.Event()
    runner = JobRunner(
        classifier_settings, sessions, BatchProcessor(sessions, SchemeCache()), system_clock()
    )
    task = asyncio.create_task(runner.run(stopping))
    yield runner
    stopping.set()
    await asyncio.wait_for(task, timeout=30)


async def test_scheme_draft_preview_activation_and_rollback(
    api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
    keys: dict[str, str],
    job_runner: JobRunner,
) -> None:
    await seeded([order(f"p-{i}", 3) for i in range(6)] + [order("p-old", 500)])
    yaml_headers = {"content-type": "application/yaml"}

    broken = default_scheme_text().replace(
        "{feature: recency_days, lte: 90}", "{feature: recncy_days, lte: 90}"
    )
    invalid = await api.post("/v1/schemes", content=broken.encode(), headers=yaml_headers)
    assert invalid.status_code == 422
    assert any("unknown feature 'recncy_days'" in e["message"] for e in invalid.json()["errors"])
    assert any(
        e["field"].startswith("dimensions.purchase_behavior.rules[0]")
        for e in invalid.json()["errors"]
    )

    looser = default_scheme_text().replace(
        "{feature: orders_365d, gte: 4}", "{feature: orders_365d, gte: 1}"
    )
    created = await api.post("/v1/schemes", content=looser.encode(), headers=yaml_headers)
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    assert created.json()["status"] == "draft"
    assert created.headers["location"] == f"/v1/schemes/{version}"

    async def snapshot() -> tuple[object, ...]:
        async with sessions() as session:
            return (
                await session.scalar(select(func.count()).select_from(ClassChange)),
                await session.scalar(select(func.max(Customer.updated_at))),
            )

    before = await snapshot()
    preview = await api.post(f"/v1/schemes/{version}/preview")
    assert preview.status_code == 200, preview.text
    impact = preview.json()["dimensions"]["purchase_behavior"]
    assert impact["changed"] == 6
    [transition] = impact["transitions"]
    assert (transition["from"], transition["to"], transition["count"]) == (
        "occasional",
        "regular",
        6,
    )
    assert len(transition["sample_customer_ids"]) == 5
    assert await snapshot() == before  # preview wrote nothing

    started = await api.post(f"/v1/schemes/{version}/activate", json={})
    assert started.status_code == 202, started.text
    assert started.json()["status"] in ("queued", "running")
    assert started.json()["kind"] == "activate"
    assert started.json()["created_by"] == keys["admin_id"]  # attributable to the key
    again = await api.post(f"/v1/schemes/{version}/activate", json={})
    assert again.status_code == 409

    async def finished(activation: str) -> dict[str, object] | None:
        body = (await api.get(activation)).json()
        return body if body["status"] not in ("queued", "running") else None

    done = await eventually(lambda: finished(started.headers["location"]), within=60)
    assert done["status"] == "succeeded"
    assert done["done"] == done["total"] == 7
    assert done["claimed_by"] == job_runner.name  # run by the worker, not the API
    job = (await api.get(f"/v1/jobs/{done['id']}")).json()
    assert job == done
    lookup = (await api.post("/v1/customers:lookup", json={"ids": ["p-0"]})).json()
    assert lookup["customers"][0]["classes"]["purchase_behavior"]["class"] == "regular"
    async with sessions() as session:
        announced = await session.scalar(
            select(func.count()).where(ClassChange.reason == "scheme_change")
        )
    # Preview and activation agree: every change previewed (all dimensions) was made.
    assert (
        done["changes"]
        == announced
        == sum(d["changed"] for d in preview.json()["dimensions"].values())
    )

    done_first = done

    # Roll back silently: version 1 again, classes restored, nothing announced.
    rollback = await api.post("/v1/schemes/1/activate", json={"silent": True})
    assert rollback.status_code == 202
    done = await eventually(lambda: finished(rollback.headers["location"]), within=60)
    assert done["status"] == "succeeded"
    assert done["changes"] == 6  # purchase_behavior back; rank cut-offs unchanged
    lookup = (await api.post("/v1/customers:lookup", json={"ids": ["p-0"]})).json()
    assert lookup["customers"][0]["classes"]["purchase_behavior"]["class"] == "occasional"
    async with sessions() as session:
        announced = await session.scalar(
            select(func.count()).where(ClassChange.reason == "scheme_change")
        )
    assert announced == done_first["changes"]  # the silent rollback announced nothing
    listing = (await api.get("/v1/schemes")).json()["schemes"]
    assert {s["version"]: s["status"] for s in listing} == {version: "retired", 1: "active"}


async def test_database_down_is_a_503_with_retry_after(
    classifier_settings: ClassifierSettings,
) -> None:
    with socket.socket() as s:  # a port nothing listens on: PostgreSQL is "down"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = classifier_settings.database_url.rsplit("@", 1)[0] + f"@127.0.0.1:{port}/nowhere"
    settings = classifier_settings.model_copy(update={"database_url": url, "auth_enabled": False})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            answers = [
                await client.get("/v1/customers/cust-1"),  # the asyncpg read path
                await client.post("/v1/customers:lookup", json={"ids": ["cust-1"]}),
                await client.get("/v1/customers/cust-1/history"),  # the read pool too
                await client.get("/v1/classes/counts"),  # through SQLAlchemy
            ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "5"
        assert response.json()["type"].endswith("/database-unavailable")
        assert "password" not in response.text


async def test_preview_rebuilds_customers_whose_past_is_summarised_from_the_facts_log(
    api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A draft whose window reaches further back than the active scheme's horizon
    sees the orders the bounded state only keeps summarised."""
    await seeded([order("deep", 1000), order("deep", 900), order("deep", 10)])
    async with sessions() as session:
        doc = await session.scalar(select(Customer.facts).where(Customer.id == "deep"))
    assert doc is not None
    assert "past" in doc  # the two old orders are summarised, not kept in detail
    assert len(doc["orders"]) == 1
    longer = default_scheme_text().replace(
        "\ndimensions:\n",
        "\n  orders_1200d:\n    source: orders\n    agg: count\n"
        "    window: {last_days: 1200}\n"
        "\ndimensions:\n"
        "  veteran:\n    classes: [veteran, newer]\n    default: newer\n    rules:\n"
        "      - class: veteran\n        when: {feature: orders_1200d, gte: 3}\n",
    )
    created = await api.post(
        "/v1/schemes", content=longer.encode(), headers={"content-type": "application/yaml"}
    )
    assert created.status_code == 201, created.text
    preview = await api.post(f"/v1/schemes/{created.json()['version']}/preview")
    assert preview.status_code == 200, preview.text
    transitions = preview.json()["dimensions"]["veteran"]["transitions"]
    [veterans] = [t for t in transitions if t["to"] == "veteran"]
    assert veterans["sample_customer_ids"] == ["deep"]


async def test_explanations_show_time_moving_values_as_of_the_read(
    api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The only order was 30 days ago: the customer was evaluated then (recency 0).
    await seeded([order("recent-30", 30)])
    body = (await api.get("/v1/customers/recent-30")).json()
    behaviour = body["classes"]["purchase_behavior"]
    assert behaviour["class"] == "occasional"
    checks = {c["feature"]: c for c in behaviour["explanation"]["checks"]}
    assert checks["recency_days"]["actual"] == 30
    assert checks["recency_days"]["result"] is True  # still < 365: class and reason agree
    assert "recency_days = 30 " in behaviour["explanation"]["summary"]
    assert body["features"]["recency_days"] == 30
    assert body["features"]["tenure_days"] == 30
    assert body["review_due"] is False
    read_at = datetime.fromisoformat(body["values_as_of"])
    assert abs((read_at - datetime.now(UTC)).total_seconds()) < 60
    assert datetime.fromisoformat(body["evaluated_at"]) < read_at - timedelta(days=29)
    # A decaying score is shown decayed: 30 points per order, halved every 30 days.
    assert body["features"]["lead_score"] == pytest.approx(15.0, rel=1e-3)

    # A customer whose review is due and not done yet: values as evaluated, and said so.
    late = order("late-400", 400)
    await BatchProcessor(sessions, SchemeCache()).process([Delivery(late.to_envelope("t"), late)])
    body = (await api.get("/v1/customers/late-400")).json()
    assert body["review_due"] is True
    assert body["values_as_of"] == body["evaluated_at"]
    checks = {
        c["feature"]: c for c in body["classes"]["purchase_behavior"]["explanation"]["checks"]
    }
    assert checks["recency_days"]["actual"] == 0


async def test_a_document_another_write_changed_is_read_from_the_columns(
    frozen_api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    api = frozen_api
    await seeded([order("doc-1", 30), order("doc-1", 2)])
    async with sessions() as session:
        assert await session.scalar(select(Customer.document).where(Customer.id == "doc-1"))
    rendered = (await api.get("/v1/customers/doc-1")).json()

    # A write that does not render the document (as a merge or a cut-off flagging
    # does) empties it; the answer is the same, from the columns.
    async with sessions() as session, session.begin():
        await session.execute(text("UPDATE customers SET features = features WHERE id = 'doc-1'"))
        assert await session.scalar(select(Customer.document).where(Customer.id == "doc-1")) is None
    from_columns = (await api.get("/v1/customers/doc-1")).json()
    bulk = (await api.post("/v1/customers:lookup", json={"ids": ["doc-1"]})).json()

    assert rendered["values_as_of"] != rendered["evaluated_at"]  # values moved to the read
    assert from_columns == rendered
    assert bulk["customers"][0]["classes"] == rendered["classes"]
    # The worker's next write of the customer renders it again.
    await seeded([order("doc-1", 1)])
    async with sessions() as session:
        assert await session.scalar(select(Customer.document).where(Customer.id == "doc-1"))
    again = (await api.get("/v1/customers/doc-1")).json()
    assert again["aggregates"]["order_count"] == 3


async def test_lookups_arriving_together_share_queries_and_each_gets_its_own_answer(
    frozen_api: httpx.AsyncClient,
    seeded: Callable[[list[OrderPlaced]], Awaitable[None]],
    keys: dict[str, str],
) -> None:
    api = frozen_api
    await seeded([order(f"many-{i}", i + 1) for i in range(20)])
    reader = api.app.state.reader  # type: ignore[attr-defined]
    alone = {i: (await api.get(f"/v1/customers/many-{i}")).json() for i in range(20)}
    queries = 0
    pool = reader.pool

    class Counted:  # the real pool, its queries counted
        async def fetch(self, *args: object) -> object:
            nonlocal queries
            queries += 1
            return await pool.fetch(*args)

    reader.pool = Counted()
    labels = {"method": "GET", "route": "/v1/customers/{customer_id}", "status": "200"}
    counted_before = REGISTRY.get_sample_value("classifier_http_requests_total", labels) or 0
    read = {"X-API-Key": keys["read"]}
    answers = await asyncio.gather(
        *(api.get(f"/v1/customers/many-{i % 20}", headers=read) for i in range(60)),
        api.get("/v1/customers/nobody", headers=read),
    )

    *found, unknown = answers
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("customer-not-found")
    for i, response in enumerate(found):
        assert response.json() == alone[i % 20]
    assert queries < len(answers)
    # Counted by the request metrics under the route's template, like any request.
    counted = REGISTRY.get_sample_value("classifier_http_requests_total", labels)
    assert counted == counted_before + len(found)
