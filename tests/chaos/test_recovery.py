"""Faults the stack must recover from by itself: killed processes, a broker restart,
a deadlock, a second checkout's stack beside it. Each case measures its recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import murmur2

from tests.chaos.conftest import Stack, order, report, wait_until
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.chaos


class Load:
    """Posts orders for 10 customers at a steady pace, as a client would: on 503 or a
    refused connection it waits and sends the same order again."""

    def __init__(self, stack: Stack, count: int, pace: float = 0.02) -> None:
        self.stack = stack
        self.tag = uuid.uuid4().hex[:6]
        self.count = count
        self.pace = pace
        self.accepted: list[float] = []  # when each order got its 202
        self.failures = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=240)

    def wait(self) -> None:
        self._thread.join(timeout=240)
        assert not self._thread.is_alive(), "the load did not finish"

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.stack.ingest, timeout=15, headers=self.stack.intake_headers()
        ) as client:
            for i in range(self.count):
                body = order(f"{self.tag}-{i % 10}", f"{self.tag}-o{i}")
                while True:
                    try:
                        if client.post("/v1/orders", json=body).status_code == 202:
                            self.accepted.append(time.monotonic())
                            break
                    except httpx.HTTPError:
                        pass
                    self.failures += 1
                    time.sleep(0.2)
                time.sleep(self.pace)

    def reflected_exactly_once(self) -> bool:
        """Every order is counted once: 10 customers, count / 10 orders each."""
        for c in range(10):
            answer = self.stack.customer(f"{self.tag}-{c}")
            if answer.status_code != 200:
                return False
            if answer.json()["aggregates"]["order_count"] != self.count // 10:
                return False
        return True


def restart_time(stack: Stack, program: str) -> float:
    """SIGKILL the program; seconds until the supervisor runs a new process of it."""
    old = stack.pid(program)
    assert old
    os.kill(old, signal.SIGKILL)
    return wait_until(lambda: stack.pid(program) not in (0, old), within=15, interval=0.05)


def test_killed_worker_and_ingest_are_restarted_and_nothing_is_lost(chaos_stack: Stack) -> None:
    stack = chaos_stack
    with Load(stack, 300) as load:
        time.sleep(1)
        worker_back = restart_time(stack, "classifier-worker")
        time.sleep(1)
        ingest_back = restart_time(stack, "ingest")
        ingest_ready = wait_until(
            lambda: httpx.get(f"{stack.ingest}/readyz", timeout=1).status_code == 200, within=30
        )
        load.wait()
    report("sigkill.worker_restarted_seconds", worker_back)
    report("sigkill.ingest_restarted_seconds", ingest_back)
    report("sigkill.ingest_ready_after_restart_seconds", ingest_ready)
    assert worker_back < 5
    assert ingest_back < 5
    wait_until(load.reflected_exactly_once, within=60, interval=0.5)


def test_one_of_two_worker_processes_killed_under_load_loses_and_doubles_nothing(
    chaos_stack_two_workers: Stack,
) -> None:
    """`CLASSIFIER_WORKER_PROCESSES=2 make up`: two workers share the partitions; one is
    SIGKILLed mid-stream, the other takes its partitions over until supervisord has
    restarted it, and every order is still counted exactly once."""
    stack = chaos_stack_two_workers
    workers = [
        line.split()[0]
        for line in stack.supervisorctl("status", "classifier-worker:*").splitlines()
        if "RUNNING" in line
    ]
    assert len(workers) == 2, stack.supervisorctl("status")
    with Load(stack, 300) as load:
        time.sleep(1.5)
        back = restart_time(stack, workers[0])
        load.wait()
    report("sigkill.one_of_two_workers_restarted_seconds", back)
    assert back < 5
    wait_until(load.reflected_exactly_once, within=90, interval=0.5)
    assert stack.pid(workers[1])  # the other one ran on throughout


def test_intake_answers_again_soon_after_a_broker_restart(chaos_stack: Stack) -> None:
    stack = chaos_stack
    with Load(stack, 200, pace=0.05) as load:
        time.sleep(1)
        stack.sh("kafka-down")
        time.sleep(3)
        stack.sh("kafka-up")  # returns once the broker's port is open
        back = time.monotonic()
        wait_until(lambda: any(t > back for t in load.accepted), within=30, interval=0.05)
        first_accepted = min(t for t in load.accepted if t > back) - back
        load.wait()
    report("broker_restart.intake_202_after_return_seconds", first_accepted)
    assert first_accepted < 10
    assert httpx.get(f"{stack.ingest}/readyz", timeout=5).status_code == 200
    wait_until(load.reflected_exactly_once, within=90, interval=0.5)


async def test_worker_survives_a_deadlock_and_loses_nothing(chaos_stack: Stack) -> None:
    """Lock customer B, let the worker's batch lock A and wait on B, then lock A:
    PostgreSQL breaks the deadlock by aborting the worker's transaction, which the
    worker must retry, not die of."""
    stack = chaos_stack
    tag = uuid.uuid4().hex[:6]
    first = f"{tag}-a"
    # Same partition (Kafka's default murmur2 partitioner, 6 partitions), so both
    # orders reach the worker in one batch and it locks both customers at once.
    second = next(
        f"{tag}-b{n}" for n in range(1000) if _partition(f"{tag}-b{n}") == _partition(first)
    )
    async with httpx.AsyncClient(
        base_url=stack.ingest, timeout=10, headers=stack.intake_headers()
    ) as client:
        for customer in (first, second):
            answer = await client.post("/v1/orders", json=order(customer, f"{customer}-1"))
            assert answer.status_code == 202
    await asyncio.to_thread(wait_until, lambda: stack.customer(second).status_code == 200, 30)
    worker = stack.pid("classifier-worker")
    conn = await asyncpg.connect(stack.dsn)
    try:
        deadlocks_before = await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", second)
        # One batch for both customers: same partition key is not needed, the
        # worker locks every customer of a batch in id order (A before B).
        async with httpx.AsyncClient(
            base_url=stack.ingest, timeout=10, headers=stack.intake_headers()
        ) as client:
            answer = await client.post(
                "/v1/orders:batch",
                json=[order(first, f"{first}-2"), order(second, f"{second}-2")],
            )
            assert answer.status_code == 202
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        for _ in range(200):
            await conn.execute("SELECT pg_stat_clear_snapshot()")  # fresh view in our tx
            if await conn.fetchval(waiting):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the worker never waited for the locked customer")
        # The worker has waited longest, so its deadlock check runs first and
        # PostgreSQL aborts its transaction: this lock is then granted.
        await conn.execute("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", first)
        await tx.rollback()
        # Backends report their statistics about once a second: poll for it.
        deadlocks = deadlocks_before
        for _ in range(100):
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            deadlocks = await conn.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
            if deadlocks > deadlocks_before:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()

    def both_counted() -> bool:
        return all(
            stack.customer(c).json()["aggregates"]["order_count"] == 2 for c in (first, second)
        )

    await asyncio.to_thread(wait_until, both_counted, 30)
    assert deadlocks > deadlocks_before, "no deadlock happened: the test proved nothing"
    assert stack.pid("classifier-worker") == worker, stack.log_tail("classifier-worker")


def _partition(key: str, partitions: int = 6) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def test_a_second_checkout_beside_a_running_stack(chaos_stack: Stack, tmp_path: Path) -> None:
    """Another checkout's `make up` and `make test` must not disturb this stack."""
    stack = chaos_stack
    clone = tmp_path / "second"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / ".venv").symlink_to(ROOT / ".venv")  # same packages; skip a second install
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "TEST_DATABASE_URL", "STACK_STATE_DIR")
        and not k.startswith(("PYTEST", "INGEST_", "CLASSIFIER_"))
    }
    env.update(
        KAFKA_PORT=str(free_port()),
        KAFKA_CONTROLLER_PORT=str(free_port()),
        INGEST_PORT=str(free_port()),
        CLASSIFIER_PORT=str(free_port()),
        CLASSIFIER_WORKER_METRICS_PORT=str(free_port()),
        STACK_DB_NAME=f"classifier_extra_second_{uuid.uuid4().hex[:6]}",
    )
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def probe() -> None:
        nonlocal answered
        tag = uuid.uuid4().hex[:6]
        i = 0
        while not done.is_set():
            try:
                a = stack.customer("nobody")
                b = httpx.post(
                    f"{stack.ingest}/v1/orders",
                    json=order(f"{tag}-p", f"{tag}-{i}"),
                    headers=stack.intake_headers(),
                    timeout=10,
                )
                for r in (a, b):
                    if r.status_code >= 500:
                        failures.append(f"{r.request.url}: {r.status_code} {r.text[:200]}")
                answered += 1
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            i += 1
            time.sleep(0.2)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        for command in (
            ["make", "up"],
            ["make", "test", "PYTEST_ARGS=tests/unit/test_change_ids.py -q"],
        ):
            run = subprocess.run(
                command,
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert run.returncode == 0, f"{command}: {run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    finally:
        subprocess.run(
            ["make", "down"], cwd=clone, env=env, capture_output=True, timeout=180, check=False
        )
        subprocess.run(
            ["bash", "scripts/stack.sh", "drop-database", env["STACK_DB_NAME"]],
            cwd=clone,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        done.set()
        prober.join(timeout=30)
    assert answered > 10
    assert not failures, failures[:5]
    assert httpx.get(f"{stack.api}/readyz", timeout=5).status_code == 200
