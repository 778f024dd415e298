"""A whole stack as `make up` runs it, for the chaos tests (`make chaos`).

scripts/stack.sh starts it with a state dir, a broker, a database and ports of
its own: the three processes run under supervisord exactly as after `make up`,
so a test can SIGKILL them, restart the broker, lock rows, or post poison, and
then check that the stack recovered by itself and lost nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, free_port

STACK = ROOT / "scripts" / "stack.sh"


@dataclass
class Stack:
    env: dict[str, str]
    state: Path
    ingest: str
    api: str
    kafka: str
    database_url: str
    key: str
    intake_key: str = ""

    def intake_headers(self) -> dict[str, str]:
        """What a shop sends to ingest: its intake key (every *:write scope, no quota)."""
        return {"Authorization": f"Bearer {self.intake_key}"}

    def sh(self, *args: str, timeout: float = 240) -> str:
        done = subprocess.run(
            ["bash", str(STACK), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"stack.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run(
            [
                str(ROOT / ".venv/bin/supervisorctl"),
                "-c",
                str(self.state / "supervisord.conf"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()

    def pid(self, program: str) -> int:
        out = self.supervisorctl("pid", program)
        return int(out) if out.isdigit() else 0

    @property
    def dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def log_tail(self, program: str, chars: int = 3000) -> str:
        path = self.state / "logs" / f"{program}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def customer(self, customer_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.api}/v1/customers/{customer_id}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )


def order(customer_id: str, order_id: str, amount: str = "100.00") -> dict[str, object]:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "amount": amount,
        "currency": "CNY",
        "placed_at": "2026-11-20T09:30:00+08:00",
        "status": "paid",
    }


def wait_until(check: object, within: float, interval: float = 0.1) -> float:
    """Call `check()` until truthy; return the seconds it took (fail after `within`)."""
    started = time.monotonic()
    assert callable(check)
    while time.monotonic() - started < within:
        try:
            if check():
                return time.monotonic() - started
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(interval)
    raise AssertionError(f"not within {within}s")


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(tmp_path_factory.mktemp("chaos-stack"))


@pytest.fixture(scope="session")
def chaos_stack_two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same with `CLASSIFIER_WORKER_PROCESSES=2`: two worker processes in one group."""
    state = tmp_path_factory.mktemp("chaos-stack-2")
    yield from running_stack(state, CLASSIFIER_WORKER_PROCESSES="2")


def running_stack(state: Path, **extra_env: str) -> Iterator[Stack]:
    """`stack.sh up` with its own state dir, ports and database; `down` afterwards."""
    kafka_port = free_port()
    ports = {
        "STACK_STATE_DIR": str(state),
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "INGEST_PORT": str(free_port()),
        "CLASSIFIER_PORT": str(free_port()),
        "CLASSIFIER_WORKER_METRICS_PORT": str(free_port()),
        "CLASSIFIER_WEBHOOK_METRICS_PORT": str(free_port()),
        "STACK_DB_NAME": f"classifier_extra_chaos_{uuid.uuid4().hex[:8]}",
        # Made up per run, for the signed-webhook cases: not a real secret.
        "INGEST_GENERIC_WEBHOOK_SECRET": secrets.token_hex(16),
    }
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    env.update(ports)
    env.update(extra_env)
    stack = Stack(
        env=env,
        state=state,
        ingest=f"http://127.0.0.1:{ports['INGEST_PORT']}",
        api=f"http://127.0.0.1:{ports['CLASSIFIER_PORT']}",
        kafka=f"127.0.0.1:{kafka_port}",
        database_url="",
        key="",
    )
    try:
        stack.sh("up", timeout=300)
        app_env = dict(item.split("=", 1) for item in stack.sh("env").split())
        stack.database_url = app_env["DATABASE_URL"]
        created = subprocess.run(
            [
                str(ROOT / ".venv/bin/classifier"),
                "api-keys",
                "create",
                "--name",
                "chaos",
                "--scope",
                "admin",
            ],
            env={**env, **app_env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        stack.key = created.stdout.strip().splitlines()[-1]
        intake = subprocess.run(
            [
                str(ROOT / ".venv/bin/classifier"),
                "api-keys",
                "create",
                "--name",
                "chaos-intake",
                "--scope",
                "orders:write,calls:write,imports:write",
                "--rate",
                "0",
            ],
            env={**env, **app_env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        stack.intake_key = intake.stdout.strip().splitlines()[-1]
        yield stack
    finally:
        subprocess.run(
            ["bash", str(STACK), "down"], env=env, capture_output=True, timeout=180, check=False
        )
        subprocess.run(
            ["bash", str(STACK), "drop-database", ports["STACK_DB_NAME"]],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


RESULTS = ROOT / "bench-results" / "chaos.json"


def report(case: str, seconds: float) -> None:
    """Keep a measured recovery time in bench-results/chaos.json (the closing note quotes it)."""
    RESULTS.parent.mkdir(exist_ok=True)
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    results[case] = round(seconds, 3)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
