"""The in-memory key cache: one lookup for concurrent callers, misses and failures."""

from __future__ import annotations

import asyncio

import pytest

from eventschemas.keycache import KeyCache


class Store:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.lookups = 0
        self.fail = False

    async def load(self, digest: str) -> str | None:
        self.lookups += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("store down")
        return self.keys.get(digest)


async def test_concurrent_callers_share_one_lookup_and_hits_cost_none() -> None:
    store, cache = Store({"h": "key-1"}), KeyCache[str](60)
    found = await asyncio.gather(*(cache.get("h", store.load) for _ in range(20)))
    assert found == ["key-1"] * 20
    assert await cache.get("h", store.load) == "key-1"
    assert store.lookups == 1


async def test_a_verdict_expires_after_its_ttl() -> None:
    store, cache = Store({"h": "key-1"}), KeyCache[str](0.05, miss_ttl=0.05)
    assert await cache.get("h", store.load) == "key-1"
    del store.keys["h"]  # revoked
    assert await cache.get("h", store.load) == "key-1"  # still trusted...
    await asyncio.sleep(0.06)
    assert await cache.get("h", store.load) is None  # ...for at most the ttl
    assert await cache.get("h", store.load) is None
    assert store.lookups == 2  # the miss is remembered too


async def test_a_failed_lookup_reaches_every_waiter_and_is_not_cached() -> None:
    store, cache = Store({"h": "key-1"}), KeyCache[str](60)
    store.fail = True
    results = await asyncio.gather(
        *(cache.get("h", store.load) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    store.fail = False
    assert await cache.get("h", store.load) == "key-1"


async def test_a_cancelled_lookup_leaves_the_waiters_to_look_up_themselves() -> None:
    store, cache = Store({"h": "key-1"}), KeyCache[str](60)
    first = asyncio.create_task(cache.get("h", store.load))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("h", store.load))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "key-1"


async def test_a_ttl_of_zero_caches_nothing() -> None:
    store, cache = Store({"h": "key-1"}), KeyCache[str](0)
    for _ in range(3):
        assert await cache.get("h", store.load) == "key-1"
    assert store.lookups == 3
