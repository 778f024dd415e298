"""`ingest`: run the Fxiaoke sync from the command line.

ingest fxiaoke run                      poll for changes until stopped (SIGTERM/Ctrl-C)
ingest fxiaoke sync [--since ISO-8601]  one pass; --since backfills from that instant
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime
from typing import Annotated

import httpx
import typer
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn

from ingest.config import IngestSettings
from ingest.errors import KafkaUnavailable
from ingest.fxiaoke.client import FxiaokeError, FxiaokeNotConfigured
from ingest.fxiaoke.runner import open_sync
from ingest.fxiaoke.sync import SyncReport, run_forever

app = typer.Typer(help="Ingest service tools.", no_args_is_help=True)
fxiaoke = typer.Typer(help="Fxiaoke (纷享销客) incremental sync.", no_args_is_help=True)
app.add_typer(fxiaoke, name="fxiaoke")
console = Console(stderr=True)


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        moment = datetime.fromisoformat(since)
    except ValueError as exc:
        raise typer.BadParameter("an ISO 8601 date or instant, e.g. 2026-01-01") from exc
    return int(moment.astimezone().timestamp() * 1000)


async def _sync(settings: IngestSettings, since_ms: int | None) -> SyncReport:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        async with open_sync(settings) as sync:
            return await sync.run_once(since_ms=since_ms, progress=advance)


@fxiaoke.command("sync")
def sync_command(
    since: Annotated[
        str | None, typer.Option(help="Backfill records modified since (ISO 8601).")
    ] = None,
) -> None:
    """One pass over every configured object, with a progress bar."""
    settings = IngestSettings()
    try:
        report = asyncio.run(_sync(settings, _since_ms(since)))
    except (FxiaokeNotConfigured, FxiaokeError, KafkaUnavailable, httpx.HTTPError) as exc:
        # Records up to the failure are published and their cursors saved: run it again.
        console.print(f"[red]sync stopped: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(1) from exc
    for name, r in report.objects.items():
        console.print(f"{name}: {r.read} read, {r.published} published, {r.ignored} ignored")


async def _run(settings: IngestSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_sync(settings) as sync:
        await run_forever(sync, settings, stop)


@fxiaoke.command("run")
def run_command() -> None:
    """Poll Fxiaoke every INGEST_FXIAOKE_POLL_INTERVAL_SECONDS until stopped."""
    settings = IngestSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.INFO)
    if settings.fxiaoke_metrics_port:
        start_http_server(settings.fxiaoke_metrics_port, addr=settings.host)
    try:
        asyncio.run(_run(settings))
    except FxiaokeNotConfigured as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
