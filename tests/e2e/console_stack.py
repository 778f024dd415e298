"""The services as OS processes for the console's browser tests: the API can be
restarted on its port (a cut SSE connection), and a headless Debian chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from classifier.config import ClassifierSettings
from tests.processes import (
    ROOT,
    api_command,
    free_port,
    service_env,
    start,
    stop,
    wait_ready,
    worker_command,
)

CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "console"


@dataclass
class ConsoleStack:
    settings: ClassifierSettings
    logs: Path
    ingest: str = ""
    api: str = ""
    api_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return service_env(self.settings)

    def start_api(self) -> None:
        log = self.logs / "api.log"
        self.procs["api"] = start(
            api_command("classifier.app:create_app", self.api_port), self.env(), log
        )
        wait_ready(self.api + "/readyz", self.procs["api"], log)

    def stop_api(self) -> None:
        """Stop the API: its open SSE connections are cut (start it again with start_api)."""
        stop(self.procs["api"], within=2)


@contextlib.contextmanager
def console_stack(settings: ClassifierSettings, tmp_path: Path) -> Iterator[ConsoleStack]:
    stack = ConsoleStack(settings, tmp_path)
    ingest_port, stack.api_port = free_port(), free_port()
    stack.ingest = f"http://127.0.0.1:{ingest_port}"
    stack.api = f"http://127.0.0.1:{stack.api_port}"
    try:
        log = tmp_path / "ingest.log"
        stack.procs["ingest"] = start(
            api_command("ingest.app:create_app", ingest_port), stack.env(), log
        )
        stack.procs["worker"] = start(worker_command(), stack.env(), tmp_path / "worker.log")
        wait_ready(stack.ingest + "/readyz", stack.procs["ingest"], log)
        stack.start_api()
        yield stack
    finally:
        for proc in stack.procs.values():
            stop(proc, within=10)


def chromium_path() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test installs it)")
    return CHROMIUM


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def sign_in(page: Page, api: str, key: str) -> None:
    await page.goto(api + "/console/")
    await page.fill("#signin-key", key)
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#nav:not([hidden])")


async def screenshot(page: Page, name: str) -> None:
    """Into docs/console/ when CONSOLE_SCREENSHOTS=1 (how the README's pictures are made)."""
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


__all__ = ["ConsoleStack", "browser", "console_stack", "screenshot", "sign_in"]
