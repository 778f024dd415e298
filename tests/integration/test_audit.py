"""The audit trail of admin actions, through the API and the command line (real PostgreSQL)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier import audit
from classifier.config import ClassifierSettings
from classifier.engine import default_scheme_text
from classifier.models import AuditEntry
from classifier.processing.batch import BatchProcessor, IdentityOptions
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from tests.integration.test_cli import cli
from tests.integration.test_identity import KEY, deliver, order

pytestmark = pytest.mark.integration


async def trail(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every entry, read in small pages along `next_cursor`."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await api.get("/v1/audit", params={"after": after, "limit": 3, **params})
        assert page.status_code == 200, page.text
        body = page.json()
        entries += body["entries"]
        if not body["entries"]:
            assert body["next_cursor"] == after
            return entries
        after = body["next_cursor"]


async def test_every_admin_action_is_in_the_trail_without_customer_ids(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    keys: dict[str, str],
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    small, big, other = f"aud-small-{tag}", f"aud-big-{tag}", f"aud-other-{tag}"
    await worker.process(deliver(order(small, 1), order(big, 2, amount=6000), order(other, 3)))
    api_actor = f"api-key:{keys['admin_id']}"

    # Schemes: a draft, its activation (cancelled), a rollback to 1 (cancelled as a job).
    looser = default_scheme_text().replace(
        "{feature: orders_365d, gte: 4}", "{feature: orders_365d, gte: 1}"
    )
    draft = await api.post(
        "/v1/schemes", content=looser.encode(), headers={"content-type": "application/yaml"}
    )
    assert draft.status_code == 201, draft.text
    version = draft.json()["version"]
    activation = await api.post(f"/v1/schemes/{version}/activate", json={})
    assert activation.status_code == 202, activation.text
    cancelled = await api.post(f"/v1/activations/{activation.json()['id']}:cancel")
    assert cancelled.status_code == 202, cancelled.text
    rollback = await api.post("/v1/schemes/1/activate", json={"silent": True})
    assert rollback.status_code == 202, rollback.text
    assert (await api.post(f"/v1/jobs/{rollback.json()['id']}:cancel")).status_code == 202
    # Jobs: a recompute queued and cancelled.
    recompute = await api.post("/v1/jobs", json={})
    assert recompute.status_code == 202, recompute.text
    assert (await api.post(f"/v1/jobs/{recompute.json()['id']}:cancel")).status_code == 202
    # Overrides, with a reason that names the person (it must not reach the trail).
    reason = f"asked by ann.lee@example.com for {other}"
    put = await api.put(
        f"/v1/customers/{other}/overrides/abc_tier", json={"class": "A", "reason": reason}
    )
    assert put.status_code == 200, put.text
    assert (await api.delete(f"/v1/customers/{other}/overrides/abc_tier")).status_code == 200
    # Refused actions leave no entry.
    nobody = await api.put(
        f"/v1/customers/nobody-{tag}/overrides/abc_tier", json={"class": "A", "reason": "x"}
    )
    assert nobody.status_code == 404
    assert (await api.delete(f"/v1/customers/{other}/overrides/abc_tier")).status_code == 404
    # Merges by hand.
    merged = await api.post(f"/v1/customers/{small}/merge", json={"absorb": [big]})
    assert merged.status_code == 200, merged.text
    split = await api.post(f"/v1/customers/{small}/unmerge", json={"customer_ids": [big]})
    assert split.status_code == 200, split.text
    # API keys on the command line.
    code, out = await cli(
        classifier_settings, "api-keys", "create", "--name", "shop", "--scope", "orders:write"
    )
    assert code == 0, out
    secret = out.strip().splitlines()[-1]
    key_id = secret.split("_")[1]
    code, out = await cli(classifier_settings, "api-keys", "set-quota", key_id, "--rate", "2")
    assert code == 0, out
    code, out = await cli(classifier_settings, "api-keys", "revoke", key_id)
    assert code == 0, out
    code, out = await cli(classifier_settings, "api-keys", "revoke", key_id)
    assert code == 1, out  # nothing revoked: nothing recorded

    entries = await trail(api)
    ref = audit.customer_ref(classifier_settings, other)
    survivor = audit.customer_ref(classifier_settings, small)
    assert ref is not None
    assert survivor is not None
    activation_id, rollback_id = activation.json()["id"], rollback.json()["id"]
    recompute_id = recompute.json()["id"]
    seen = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert seen == [
        # the fixture's two keys, made in process (the command line's default actor)
        ("cli", "api_key.create", f"api-key:{keys['read_id']}"),
        ("cli", "api_key.create", f"api-key:{keys['admin_id']}"),
        (api_actor, "scheme.upload", f"scheme:{version}"),
        (api_actor, "scheme.activate", f"scheme:{version}"),
        (api_actor, "scheme.activation_cancel", f"job:{activation_id}"),
        (api_actor, "scheme.rollback", "scheme:1"),
        (api_actor, "scheme.activation_cancel", f"job:{rollback_id}"),
        (api_actor, "job.create", f"job:{recompute_id}"),
        (api_actor, "job.cancel", f"job:{recompute_id}"),
        (api_actor, "customer.override.set", ref),
        (api_actor, "customer.override.remove", ref),
        (api_actor, "customer.merge", survivor),
        (api_actor, "customer.unmerge", survivor),
        ("cli", "api_key.create", f"api-key:{key_id}"),
        ("cli", "api_key.set_quota", f"api-key:{key_id}"),
        ("cli", "api_key.revoke", f"api-key:{key_id}"),
    ]
    details = {e["action"]: e["details"] for e in entries}
    assert details["scheme.activate"] == {
        "version": version,
        "previous_version": 1,
        "silent": False,
        "job_id": activation_id,
    }
    assert details["scheme.rollback"]["previous_version"] == version
    assert details["customer.override.set"] == {
        "dimension": "abc_tier",
        "class": "A",
        "expires_at": None,
    }
    assert details["customer.merge"] == {"absorbed": 1}
    assert details["customer.unmerge"] == {"split": 1}
    assert details["api_key.set_quota"] == {"key_id": key_id, "rate_per_second": 2.0, "burst": None}
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)  # oldest first

    # No customer id, no reason text, no key: the whole trail as JSON.
    dumped = (await api.get("/v1/audit", params={"limit": 1000})).text
    for needle in (small, big, other, tag, "ann.lee", secret):
        assert needle not in dumped

    # The action filter is a prefix.
    schemes_only = await trail(api, action="scheme.")
    assert {e["action"] for e in schemes_only} == {
        "scheme.upload",
        "scheme.activate",
        "scheme.rollback",
        "scheme.activation_cancel",
    }
    assert await trail(api, action="customer.override") == [
        e for e in entries if e["action"].startswith("customer.override")
    ]


async def test_the_trail_is_append_only_and_written_with_the_action(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await audit.record(session, "cli", "test.kept", None, {"n": 1})
        await session.commit()
    async with sessions() as session:  # an action that rolls back takes its entry with it
        await audit.record(session, "cli", "test.rolled_back", None, {})
        await session.rollback()
    for statement in (
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ):
        async with sessions() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement))
    async with sessions() as session:
        rows = (await session.execute(select(AuditEntry.actor, AuditEntry.action))).all()
        assert [tuple(r) for r in rows] == [("cli", "test.kept")]
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 1


async def test_only_admin_keys_read_the_trail(api: httpx.AsyncClient, keys: dict[str, str]) -> None:
    read = await api.get("/v1/audit", headers={"Authorization": f"Bearer {keys['read']}"})
    assert read.status_code == 403
    assert read.headers["content-type"] == "application/problem+json"
    anonymous = await api.get("/v1/audit", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    bad = await api.get("/v1/audit", params={"action": "DROP TABLE"})
    assert bad.status_code == 422
    assert (await api.get("/v1/audit")).status_code == 200
