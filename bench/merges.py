"""Merges through the generic webhook, timed from its 202 until lookups of both ids
answer with the survivor (`merge.*` in bench-results/latest.json).

`merge.large_ms`: two customers with `merge_large_orders` orders each, on a quiet
worker. `merge.p50_ms` / `merge.p99_ms`: `merge_pairs` merges of small customers
sent while the freshness load runs (see suite.freshness_and_time).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson

from bench.generate import produce
from classifier.config import ClassifierSettings
from classifier.db import dsn
from eventschemas.events import OrderPlaced

POLL_SECONDS = 0.02
GIVE_UP_SECONDS = 120.0


def _orders(cid: str, count: int, start: datetime) -> list[OrderPlaced]:
    return [
        OrderPlaced(
            customer_id=cid,
            order_id=f"{cid}-o{k}",
            amount=Decimal("120"),
            currency="USD",
            amount_base=Decimal("120"),
            base_currency="USD",
            placed_at=start + timedelta(minutes=k),
        )
        for k in range(count)
    ]


class MergeBench:
    """Seeds pairs of customers, then merges them through the generic webhook."""

    def __init__(
        self,
        settings: ClassifierSettings,
        ingest_url: str,
        secret: str,
        api_url: str,
        read_key: str,
        pairs: int,
        large_orders: int,
    ) -> None:
        self._settings = settings
        self._ingest_url = ingest_url
        self._secret = secret.encode()
        self._api_url = api_url
        self._read_key = read_key
        run = uuid.uuid4().hex[:6]
        self.pairs = [(f"m{run}-a{i}", f"m{run}-b{i}") for i in range(pairs)]
        self.large = (f"m{run}-big-a", f"m{run}-big-b")
        self._large_orders = large_orders

    async def seed(self) -> list[str]:
        """Put every customer's orders on the topic; returns the ids to wait for."""
        start = datetime.now(UTC) - timedelta(days=300)
        events: list[OrderPlaced] = []
        for a, b in self.pairs:
            events += _orders(a, 2, start) + _orders(b, 3, start)
        for cid in self.large:
            events += _orders(cid, self._large_orders, start)
        await produce(list(events), self._settings)
        return [cid for pair in [*self.pairs, self.large] for cid in pair]

    async def wait_seeded(self, within: float = 300.0) -> None:
        """Until every seeded order is applied (the large pair's included)."""
        want = {cid: n for a, b in self.pairs for cid, n in ((a, 2), (b, 3))}
        want |= dict.fromkeys(self.large, self._large_orders)
        conn = await asyncpg.connect(dsn(self._settings.database_url))
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                rows = await conn.fetch(
                    "SELECT id, order_count FROM customers WHERE id = ANY($1::text[])", list(want)
                )
                if sum(1 for r in rows if r["order_count"] == want[r["id"]]) == len(want):
                    return
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        raise RuntimeError(f"the merge customers were not classified within {within} s")

    def _signed(self, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        digest = hmac.new(self._secret, f"{stamp}.".encode() + body, hashlib.sha256)
        return {
            "Content-Type": "application/json",
            "X-Webhook-Timestamp": stamp,
            "X-Webhook-Signature": f"v1={digest.hexdigest()}",
        }

    async def merge(self, client: httpx.AsyncClient, survivor: str, absorbed: str) -> float:
        """Send one merge; ms from its 202 until lookups of both ids show the survivor."""
        body = orjson.dumps(
            {
                "events": [
                    {
                        "type": "contact.merged",
                        "id": f"merge-{survivor}-{absorbed}",
                        "customer_id": survivor,
                        "absorbed_customer_ids": [absorbed],
                        "merged_at": datetime.now(UTC).isoformat(),
                    }
                ]
            }
        )
        answer = await client.post(
            f"{self._ingest_url}/v1/webhooks/generic", content=body, headers=self._signed(body)
        )
        if answer.status_code != 202:
            raise RuntimeError(f"the merge webhook answered {answer.status_code}: {answer.text}")
        accepted = time.perf_counter()
        deadline = time.monotonic() + GIVE_UP_SECONDS
        lookup = {"ids": [survivor, absorbed]}
        headers = {"Authorization": f"Bearer {self._read_key}"}
        while time.monotonic() < deadline:
            found = await client.post(
                f"{self._api_url}/v1/customers:lookup", json=lookup, headers=headers
            )
            customers = found.json()["customers"]
            if len(customers) == 2 and all(c["id"] == survivor for c in customers):
                return (time.perf_counter() - accepted) * 1000
            await asyncio.sleep(POLL_SECONDS)
        raise RuntimeError(f"{absorbed} did not answer with {survivor} in {GIVE_UP_SECONDS} s")

    async def large_ms(self) -> float:
        async with httpx.AsyncClient(timeout=30) as client:
            return await self.merge(client, *self.large)

    async def under_load(self, seconds: float) -> list[float]:
        """The small merges spread evenly over `seconds` (run beside the load)."""
        gap = seconds / max(1, len(self.pairs))
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(i: int, survivor: str, absorbed: str) -> float:
                await asyncio.sleep(i * gap)
                return await self.merge(client, survivor, absorbed)

            return list(
                await asyncio.gather(*(one(i, a, b) for i, (a, b) in enumerate(self.pairs)))
            )


def figures(large: float, delays: list[float], pct: Any) -> dict[str, Any]:
    return {
        "large_ms": round(large, 1),
        "merges": len(delays),
        "p50_ms": round(pct(delays, 0.5), 1),
        "p99_ms": round(pct(delays, 0.99), 1),
    }
