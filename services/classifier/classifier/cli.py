"""`classifier`: operate the classifier from the command line (replay, recompute, tail,
api-keys, the webhook dispatcher)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
import typer
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from sqlalchemy import select

from classifier import audit
from classifier.auth import create_key, parse_scopes, revoke_key, set_quota
from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.consumer import replay as replay_mod
from classifier.db import make_engine, make_sessionmaker
from classifier.jobs import service as jobs
from classifier.models import ApiKey

app = typer.Typer(help="Operate the customer classifier.", no_args_is_help=True)
console = Console()


def _run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(make())


@contextmanager
def _bar(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command()
def replay(
    announce: Annotated[bool, typer.Option(help="Publish the rebuilt changes again.")] = False,
    commit_group: Annotated[
        str | None,
        typer.Option(
            help="Set this consumer group's offsets to where the replay ended "
            "(default: the worker's group)."
        ),
    ] = None,
) -> None:
    """Rebuild all state from the activity topic into an empty database."""
    settings = ClassifierSettings()

    async def go() -> replay_mod.ReplayResult:
        engine = make_engine(settings)
        try:
            with _bar("replaying events") as update:
                return await replay_mod.replay(
                    settings,
                    make_sessionmaker(engine),
                    system_clock(),
                    progress=update,
                    announce=announce,
                    commit_group=commit_group or settings.consumer_group,
                )
        finally:
            await engine.dispose()

    try:
        result = _run(go)
    except replay_mod.NotEmpty as exc:
        console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"replayed {result.events} events ({result.skipped_poison} undecodable "
        f"skipped), {result.changes} class changes, in {result.seconds:.1f}s"
    )


@app.command()
def recompute(
    queue: Annotated[
        bool, typer.Option(help="Queue a recompute job for the workers instead of running it here.")
    ] = False,
) -> None:
    """Re-evaluate every customer under the active scheme (reason scheme_change)."""
    settings = ClassifierSettings()

    async def go() -> int:
        engine = make_engine(settings)
        try:
            if queue:
                job = await jobs.queue_recompute(
                    make_sessionmaker(engine), silent=False, created_by="cli", actor=audit.CLI
                )
                return job.id
            with _bar("re-evaluating customers") as update:
                return await replay_mod.recompute(
                    make_sessionmaker(engine), system_clock(), progress=update
                )
        finally:
            await engine.dispose()

    result = _run(go)
    if queue:
        console.print(f"job {result} queued; progress: GET /v1/jobs/{result}")
    else:
        console.print(f"{result} class changes")


@app.command()
def tail(
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest change.")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many changes.")] = None,
) -> None:
    """Print class changes as they happen."""
    settings = ClassifierSettings()

    async def go() -> None:
        consumer = AIOKafkaConsumer(
            settings.class_changes_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen = 0
        try:
            async for record in consumer:
                change = orjson.loads(record.value)["data"]  # a CloudEvent (structured)
                rule = f", rule {change['rule']}" if change.get("rule") else ""
                console.print(
                    f"{change['occurred_at']}  {change['customer_id']}  {change['dimension']}: "
                    f"{change['old_class'] or '-'} -> [bold]{change['new_class']}[/bold]  "
                    f"({change['reason']}{rule})",
                    highlight=False,
                )
                seen += 1
                if limit is not None and seen >= limit:
                    return
        finally:
            await consumer.stop()

    _run(go)


@app.command()
def dispatcher() -> None:
    """Run the webhook dispatcher: deliver class changes to subscriptions (until SIGTERM)."""
    from classifier.webhooks.dispatcher import main

    main()


if __name__ == "__main__":
    app()


keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="api-keys")


async def _with_sessions(work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    engine = make_engine(ClassifierSettings())
    try:
        return await work(make_sessionmaker(engine))
    finally:
        await engine.dispose()


@keys_app.command("create")
def create_api_key(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="read or admin (classifier API); orders:write, calls:write, imports:write "
            "(ingest). Repeat it, or separate scopes with commas, for several."
        ),
    ] = ["read"],  # noqa: B006 - typer reads the default, never mutates it
    rate: Annotated[
        float | None,
        typer.Option(help="Intake quota in events per second (default: ingest's; 0: none)."),
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="Events the key may send at once above its rate.")
    ] = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    try:
        scopes = parse_scopes(" ".join(scope))
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}") from exc
    if (rate is not None and rate < 0) or (burst is not None and burst < 1):
        raise typer.BadParameter("the rate is >= 0 (0: no limit) and the burst >= 1")
    key_id, key = _run(
        lambda: _with_sessions(
            lambda s: create_key(s, name, scopes, rate_per_second=rate, burst=burst)
        )
    )
    console.print(f"id: {key_id}  scope: {' '.join(scopes)}", highlight=False)
    typer.echo(key)


@keys_app.command("set-quota")
def set_api_key_quota(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    rate: Annotated[
        float | None,
        typer.Option(help="Events per second (0: no limit; unset: ingest's default)."),
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Events at once above the rate.")] = None,
) -> None:
    """Change a key's intake quota (effective within ingest's key cache time, 10 s)."""
    if (rate is not None and rate < 0) or (burst is not None and burst < 1):
        raise typer.BadParameter("the rate is >= 0 (0: no limit) and the burst >= 1")
    if not _run(
        lambda: _with_sessions(lambda s: set_quota(s, key_id, rate_per_second=rate, burst=burst))
    ):
        console.print(f"no active key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"quota of {key_id} set")


@keys_app.command("revoke")
def revoke_api_key(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key (effective within the API's key cache time, 10 s by default)."""
    if not _run(lambda: _with_sessions(lambda s: revoke_key(s, key_id))):
        console.print(f"no active key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@keys_app.command("list")
def list_api_keys() -> None:
    """Keys with their id, name, scope and state (never the key itself)."""

    async def rows(sessions: Any) -> list[Any]:
        async with sessions() as session:
            return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    for key in _run(lambda: _with_sessions(rows)):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        quota = "default" if key.rate_per_second is None else f"{key.rate_per_second:g}/s"
        if key.burst is not None:
            quota += f" burst {key.burst}"
        typer.echo(f"{key.id}\t{key.scope}\t{quota}\t{state}\t{key.name}")
