"""The three services as separate OS processes, for end-to-end tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from classifier.config import ClassifierSettings
from tests.processes import SERVER_OPTIONS, free_port, service_env, wait_ready


@contextlib.contextmanager
def running_stack(
    classifier_settings: ClassifierSettings, tmp_path: Path, root: Path, **extra_env: str
) -> Iterator[dict[str, str]]:
    """Ingest, API and worker as separate OS processes (as `make up` starts them); yields
    their URLs, a read key (`key`), an orders:write key (`intake_key`) and a
    calls:write key (`calls_key`)."""
    ingest_port, api_port = free_port(), free_port()
    env = service_env(classifier_settings, **extra_env)
    bin_dir = Path(sys.executable).parent
    commands = {
        "ingest": [
            str(bin_dir / "uvicorn"),
            "ingest.app:create_app",
            "--factory",
            "--port",
            str(ingest_port),
            *SERVER_OPTIONS,
        ],
        "api": [
            str(bin_dir / "uvicorn"),
            "classifier.app:create_app",
            "--factory",
            "--port",
            str(api_port),
            *SERVER_OPTIONS,
        ],
        "worker": [sys.executable, "-m", "classifier.worker"],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name, cmd in commands.items():
            logs[name] = tmp_path / f"{name}.log"
            procs[name] = subprocess.Popen(
                cmd, cwd=root, env=env, stdout=logs[name].open("wb"), stderr=subprocess.STDOUT
            )
        urls = {"ingest": f"http://127.0.0.1:{ingest_port}", "api": f"http://127.0.0.1:{api_port}"}
        wait_ready(urls["ingest"] + "/readyz", procs["ingest"], logs["ingest"])
        wait_ready(urls["api"] + "/readyz", procs["api"], logs["api"])
        # A read key made with the operator's command-line tool, as a user would.
        created = subprocess.run(
            [str(bin_dir / "classifier"), "api-keys", "create", "--name", "e2e"],
            cwd=root, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        urls["key"] = created.stdout.strip().splitlines()[-1]
        # And an intake key for the shop that posts orders (one key store, another scope).
        intake = subprocess.run(
            [str(bin_dir / "classifier"), "api-keys", "create", "--name", "e2e-shop",
             "--scope", "orders:write", "--rate", "100", "--burst", "100"],
            cwd=root, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        urls["intake_key"] = intake.stdout.strip().splitlines()[-1]
        calls = subprocess.run(
            [str(bin_dir / "classifier"), "api-keys", "create", "--name", "e2e-desk",
             "--scope", "calls:write", "--rate", "100", "--burst", "100"],
            cwd=root, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        urls["calls_key"] = calls.stdout.strip().splitlines()[-1]
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            # uvicorn re-raises SIGTERM after a graceful shutdown; our worker exits 0.
            if name == "worker":
                assert code == 0, logs[name].read_text()[-2000:]
            else:
                assert "Application shutdown complete" in logs[name].read_text(), name
