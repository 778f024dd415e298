"""Webhook delivery to a local receiver (`webhooks.*` in bench-results/latest.json).

Class-change records are produced to a fresh class-change topic at a fixed rate
(as the relay publishes them); a real dispatcher process (`python -m
classifier.webhooks.dispatcher`) delivers them to one subscription whose
receiver (uvicorn on 127.0.0.1, this process) verifies every signature with
`standardwebhooks` and answers 200. Figures: deliveries/s over the run, and the
delay from a record's publish to the receiver's 200 (p50, p99).

    env $(scripts/stack.sh env) .venv/bin/python -m bench.webhooks --changes 5000 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from bench.http import pct
from bench.infra import ROOT, drop_database, dsn, isolated_settings, service_env
from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker, unit_of_work
from classifier.models import WebhookSubscription
from classifier.topics import ensure_topics
from classifier.webhooks.schemas import new_secret
from eventschemas.changes import ChangeReason, ClassChanged
from eventschemas.envelope import STRUCTURED_HEADER

CUSTOMERS = 2_000  # changes spread over this many customers (order is kept per customer)


class Receiver:
    """Verifies each delivery and notes when its change arrived (first time only)."""

    def __init__(self, secret: str, expected: int) -> None:
        self._webhook = Webhook(secret)
        self.expect(expected)
        self.rejected = 0

    def expect(self, changes: int) -> None:
        """Start counting afresh: `all_arrived` is set once `changes` more arrived."""
        self._expected = changes
        self.arrived: dict[str, float] = {}
        self.all_arrived = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            change = self._webhook.verify(body, headers)
            self.arrived.setdefault(change["id"], time.time())
            if len(self.arrived) >= self._expected:
                self.all_arrived.set()
            status = 200
        except Exception:
            self.rejected += 1
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _record(i: int) -> tuple[str, bytes, bytes]:
    customer = f"w-{i % CUSTOMERS}"
    change = ClassChanged(
        change_id=f"wh-{uuid.uuid4().hex}",
        customer_id=customer,
        dimension="abc_tier",
        old_class="B",
        new_class="A",
        scheme_version=1,
        reason=ChangeReason.EVENT,
        event_id=None,
        occurred_at=datetime.now(UTC),
    )
    return change.change_id, customer.encode(), change.to_envelope().to_bytes()


async def _produce(settings: ClassifierSettings, changes: int, rate: float) -> dict[str, float]:
    """Publish `changes` records at `rate`/s; when each one was acknowledged."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=2
    )
    await producer.start()
    sent: dict[str, float] = {}
    try:
        started = time.monotonic()
        pending = []
        for i in range(changes):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            change_id, key, value = _record(i)
            sent[change_id] = time.time()
            pending.append(
                await producer.send(
                    settings.class_changes_topic, value, key=key, headers=[STRUCTURED_HEADER]
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def _subscribe(settings: ClassifierSettings, url: str) -> str:
    engine = make_engine(settings)
    secret = new_secret()
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            session.add(
                WebhookSubscription(id=uuid.uuid4(), url=url, secret=secret, created_by="bench")
            )
    finally:
        await engine.dispose()
    return secret


async def measure(
    settings: ClassifierSettings,
    changes: int,
    rate: float,
    log: Path,
    pct: Callable[[list[float], float], float],
    within: float = 300.0,
) -> dict[str, Any]:
    """Run receiver, dispatcher and producer on `settings` (its own database and topics)."""
    await ensure_topics(settings)
    # The subscription first (its secret), then the receiver that checks it.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    secret = await _subscribe(settings, f"http://127.0.0.1:{port}/hook")
    receiver = Receiver(secret, changes)
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    env = service_env(
        settings,
        CLASSIFIER_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        CLASSIFIER_WEBHOOK_METRICS_PORT="0",
        CLASSIFIER_WEBHOOK_CONSUMER_GROUP=f"{settings.consumer_group}-webhooks",
    )
    with log.open("ab") as out:
        dispatcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "classifier.webhooks.dispatcher",
            cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        # One change first, timed out of the figures: the dispatcher has joined its
        # group (a few seconds) and connected once it arrived.
        receiver.expect(1)
        await _produce(settings, 1, 1)
        await asyncio.wait_for(receiver.all_arrived.wait(), within)
        receiver.expect(changes)
        sent = await _produce(settings, changes, rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.all_arrived.wait(), within)
        dispatcher.terminate()
        await dispatcher.wait()
        delays = [(receiver.arrived[c] - sent[c]) * 1000 for c in sent if c in receiver.arrived]
        span = max(receiver.arrived.values(), default=0) - min(sent.values())
        floor = await _floor(f"http://127.0.0.1:{port}/hook", secret, min(changes, 2_000), settings)
    finally:
        if dispatcher.returncode is None:
            dispatcher.terminate()
            await dispatcher.wait()
        server.should_exit = server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 5)
    per_s = round(len(delays) / span, 1) if span > 0 else 0.0
    return await _stages(settings) | {
        "changes": changes,
        "rate_per_s": rate,
        "delivered": len(delays),
        "rejected": receiver.rejected,
        "deliveries_per_s": per_s,
        # The same signed POSTs from one httpx client process, no Kafka, no database.
        "floor_posts_per_s": floor,
        "vs_floor": round(per_s / floor, 3) if floor else None,
        "p50_ms": round(pct(delays, 0.5), 1) if delays else None,
        "p99_ms": round(pct(delays, 0.99), 1) if delays else None,
        "max_ms": round(max(delays), 1) if delays else None,
        "max_in_flight": settings.webhook_max_in_flight,
    }


async def _stages(settings: ClassifierSettings) -> dict[str, Any]:
    """Median ms from the record's publish to its delivery row (the dispatcher consumed
    and stored it) and from there to the delivered mark: where the time goes."""
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        row = await conn.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY created_at - changed_at),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered_at - created_at)"
            " FROM webhook_deliveries WHERE status = 'delivered'"
        )
    finally:
        await conn.close()

    def ms(value: Any) -> float | None:
        return None if value is None else round(value.total_seconds() * 1000, 1)

    return {"stored_p50_ms": ms(row[0]), "stored_to_delivered_p50_ms": ms(row[1])}


async def _floor(url: str, secret: str, posts: int, settings: ClassifierSettings) -> float:
    """POSTs/s of a bare signing httpx client (its own process) to the same receiver."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.webhooks", "--floor-url", url, "--changes", str(posts),
        "--concurrency", str(settings.webhook_max_in_flight),
        cwd=ROOT, env={**os.environ, "BENCH_WEBHOOK_SECRET": secret},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return float(orjson.loads(out)["posts_per_s"])


async def _post_floor(url: str, secret: str, posts: int, concurrency: int) -> dict[str, Any]:
    webhook = Webhook(secret)
    body = _record(0)[2].decode()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False) as client:

        async def one(i: int) -> None:
            async with gate:
                at = datetime.now(UTC)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": f"msg_floor{i}",
                    "webhook-timestamp": str(int(at.timestamp())),
                    "webhook-signature": webhook.sign(f"msg_floor{i}", at, body),
                }
                (await client.post(url, content=body, headers=headers)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(posts)))
        return {"posts_per_s": round(posts / (time.perf_counter() - started), 1)}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    base = ClassifierSettings()
    settings = await isolated_settings(base)
    try:
        return await measure(settings, args.changes, args.rate, Path(args.log), pct)
    finally:
        await drop_database(base.database_url, settings.database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--log", default="bench-results/dispatcher.log")
    parser.add_argument("--floor-url", help=argparse.SUPPRESS)  # the floor's client process
    parser.add_argument("--concurrency", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_url:
        secret = os.environ["BENCH_WEBHOOK_SECRET"]
        figures = asyncio.run(_post_floor(args.floor_url, secret, args.changes, args.concurrency))
        print(orjson.dumps(figures).decode())  # noqa: T201
        return
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    print(orjson.dumps(asyncio.run(_main(args)), option=orjson.OPT_INDENT_2).decode())  # noqa: T201


if __name__ == "__main__":
    main()
