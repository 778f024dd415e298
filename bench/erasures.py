"""Erasures timed from the request until the receipt says completed
(`erasure.*` in bench-results/latest.json): customers with `erasure_facts` facts
each, erased while the freshness load runs (see suite.freshness_and_time)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from bench.generate import produce
from bench.merges import _orders
from classifier.config import ClassifierSettings
from classifier.db import dsn

POLL_SECONDS = 0.05
GIVE_UP_SECONDS = 300.0


class ErasureBench:
    def __init__(
        self, settings: ClassifierSettings, api_url: str, admin_key: str, customers: int, facts: int
    ) -> None:
        self._settings = settings
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {admin_key}"}
        run = uuid.uuid4().hex[:6]
        self.ids = [f"e{run}-{i}" for i in range(customers)]
        self._facts = facts

    async def seed(self, within: float = 600.0) -> None:
        """Every customer's orders on the topic, then wait until all are applied."""
        start = datetime.now(UTC) - timedelta(days=360)
        await produce(
            [o for cid in self.ids for o in _orders(cid, self._facts, start)], self._settings
        )
        conn = await asyncpg.connect(dsn(self._settings.database_url))
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                done = await conn.fetchval(
                    "SELECT count(*) FROM customers WHERE id = ANY($1::text[]) "
                    "AND order_count = $2",
                    self.ids,
                    self._facts,
                )
                if done == len(self.ids):
                    return
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        raise RuntimeError(f"the erasure customers were not classified within {within} s")

    async def erase(self, client: httpx.AsyncClient, customer_id: str) -> float:
        """ms from the request until its receipt is completed."""
        started = time.perf_counter()
        asked = await client.post(
            f"{self._api_url}/v1/erasures", json={"customer_id": customer_id}, headers=self._headers
        )
        if asked.status_code != 202:
            raise RuntimeError(f"the erasure answered {asked.status_code}: {asked.text}")
        receipt = f"{self._api_url}{asked.headers['location']}"
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while time.monotonic() < deadline:
            if (await client.get(receipt, headers=self._headers)).json()["status"] == "completed":
                return (time.perf_counter() - started) * 1000
            await asyncio.sleep(POLL_SECONDS)
        raise RuntimeError(f"the erasure of {customer_id} did not complete in {GIVE_UP_SECONDS} s")

    async def under_load(self, seconds: float) -> list[float]:
        gap = seconds / max(1, len(self.ids))
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(i: int, cid: str) -> float:
                await asyncio.sleep(i * gap)
                return await self.erase(client, cid)

            return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(self.ids))))


def figures(delays: list[float], facts: int, pct: Any) -> dict[str, Any]:
    return {
        "erasures": len(delays),
        "facts_each": facts,
        "p50_ms": round(pct(delays, 0.5), 1),
        "p99_ms": round(pct(delays, 0.99), 1),
        "max_ms": round(max(delays), 1) if delays else None,
    }
