"""Merges and unmerges by hand through the API (real PostgreSQL)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.processing.batch import BatchProcessor, IdentityOptions
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import Identity, identity_digest
from tests.integration.test_identity import KEY, deliver, order, phone, tag_digits


def classes(document: dict[str, Any]) -> dict[str, str]:
    return {dim: c["class"] for dim, c in document["classes"].items()}


async def test_merge_by_hand_then_unmerge_restores_both(
    sessions: async_sessionmaker[AsyncSession], api: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    small, big = f"small-{tag}", f"big-{tag}"
    await worker.process(deliver(order(small, 1, amount=200)))
    await worker.process(deliver(*(order(big, n, amount=6000) for n in range(2, 5))))
    before = {cid: (await api.get(f"/v1/customers/{cid}")).json() for cid in (small, big)}
    assert classes(before[small])["value"] != classes(before[big])["value"]

    merged = await api.post(f"/v1/customers/{small}/merge", json={"absorb": [big]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["aggregates"]["order_count"] == 4
    assert classes(merged.json())["value"] == "high"  # both histories
    absorbed = (await api.get(f"/v1/customers/{big}")).json()
    assert (absorbed["id"], absorbed["merged_into"]) == (small, small)
    async with sessions() as session:
        audit = (
            await session.execute(
                text("SELECT cause, actor FROM customer_merges WHERE absorbed_id = :a"),
                {"a": big},
            )
        ).all()
        reasons = set(
            (
                await session.execute(
                    text("SELECT DISTINCT reason FROM class_changes WHERE customer_id = :c"),
                    {"c": small},
                )
            ).scalars()
        )
    assert [tuple(r) for r in audit] == [("admin", f"api-key:{keys['admin_id']}")]
    assert "merge" in reasons

    split = await api.post(f"/v1/customers/{small}/unmerge", json={"customer_ids": [big]})
    assert split.status_code == 200, split.text
    after = {cid: (await api.get(f"/v1/customers/{cid}")).json() for cid in (small, big)}
    for cid in (small, big):
        assert after[cid]["id"] == cid
        assert after[cid]["merged_into"] is None
        assert classes(after[cid]) == classes(before[cid])
        assert after[cid]["aggregates"] == before[cid]["aggregates"]
    async with sessions() as session:
        undone = await session.scalar(
            text("SELECT undone_by FROM customer_merges WHERE absorbed_id = :a"), {"a": big}
        )
        regained = await session.scalar(
            text(
                "SELECT count(*) FROM class_changes WHERE customer_id = :c AND reason = 'unmerge'"
            ),
            {"c": big},
        )
    assert undone == f"api-key:{keys['admin_id']}"
    assert regained > 0


async def test_bad_merges_are_refused_with_the_reason(
    sessions: async_sessionmaker[AsyncSession], api: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    a, b, c = f"a-{tag}", f"b-{tag}", f"c-{tag}"
    await worker.process(deliver(order(a, 1), order(b, 2), order(c, 3)))

    empty = await api.post(f"/v1/customers/{a}/merge", json={"absorb": []})
    assert empty.status_code == 422
    assert "absorb" in empty.text
    unknown = await api.post(f"/v1/customers/{a}/merge", json={"absorb": [f"nobody-{tag}"]})
    assert unknown.status_code == 404
    assert f"nobody-{tag}" in unknown.json()["detail"]
    self_merge = await api.post(f"/v1/customers/{a}/merge", json={"absorb": [a]})
    assert self_merge.status_code == 409
    reader = await api.post(
        f"/v1/customers/{a}/merge",
        json={"absorb": [b]},
        headers={"Authorization": f"Bearer {keys['read']}"},
    )
    assert reader.status_code == 403

    assert (await api.post(f"/v1/customers/{a}/merge", json={"absorb": [b]})).status_code == 200
    into_absorbed = await api.post(f"/v1/customers/{b}/merge", json={"absorb": [c]})
    assert into_absorbed.status_code == 409
    assert a in into_absorbed.json()["detail"]
    not_merged = await api.post(f"/v1/customers/{a}/unmerge", json={"customer_ids": [c]})
    assert not_merged.status_code == 409
    assert c in not_merged.json()["detail"]
    # Nothing of that changed the merge that was made.
    assert (await api.get(f"/v1/customers/{b}")).json()["merged_into"] == a


async def test_ambiguous_identifiers_are_listed(
    sessions: async_sessionmaker[AsyncSession], api: httpx.AsyncClient
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(
        sessions, SchemeCache(), identity=IdentityOptions(KEY, ambiguous_after=1)
    )
    tag = uuid.uuid4().hex[:8]
    shared = phone(f"+86215556{tag_digits(tag)}")
    for n in range(3):
        await worker.process(deliver(order(f"s{n}-{tag}", n, shared)))
    listed = (await api.get("/v1/identities/ambiguous")).json()
    mine = [i for i in listed if i["digest"] == shared.phone_hash]
    assert mine == [{"kind": "phone", "digest": shared.phone_hash, "customers": 2}]


async def test_unmerge_by_an_email_splits_off_the_ids_that_came_with_it(
    sessions: async_sessionmaker[AsyncSession], api: httpx.AsyncClient, identity_key: bytes
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(identity_key))
    tag = uuid.uuid4().hex[:8]
    first, second = f"a-{tag}", f"b-{tag}"
    address = f"Shared.{tag}@Example.cn"
    mail = Identity(email_hash=identity_digest(identity_key, "email", address.lower()))
    await worker.process(deliver(order(first, 1, mail)))
    await worker.process(deliver(order(second, 2, mail), order(second, 3)))
    assert (await api.get(f"/v1/customers/{second}")).json()["merged_into"] == first

    split = await api.post(f"/v1/customers/{first}/unmerge", json={"emails": [address]})

    assert split.status_code == 200, split.text
    assert split.json()["aggregates"]["order_count"] == 1
    back = (await api.get(f"/v1/customers/{second}")).json()
    assert (back["id"], back["merged_into"], back["aggregates"]["order_count"]) == (second, None, 2)
    # Kept apart: the shared e-mail on a later order merges nothing again.
    await worker.process(deliver(order(second, 4, mail)))
    assert (await api.get(f"/v1/customers/{second}")).json()["merged_into"] is None
    nothing = await api.post(f"/v1/customers/{first}/unmerge", json={})
    assert nothing.status_code == 422
