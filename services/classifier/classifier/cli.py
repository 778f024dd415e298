"""`classifier`: operate the classifier from the command line (replay, recompute, tail)."""

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

from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker
from classifier.processing import replay as replay_mod

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
def recompute() -> None:
    """Re-evaluate every customer under the active scheme (reason scheme_change)."""
    settings = ClassifierSettings()

    async def go() -> int:
        engine = make_engine(settings)
        try:
            with _bar("re-evaluating customers") as update:
                return await replay_mod.recompute(
                    make_sessionmaker(engine), system_clock(), progress=update
                )
        finally:
            await engine.dispose()

    console.print(f"{_run(go)} class changes")


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
                change = orjson.loads(record.value)
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


if __name__ == "__main__":
    app()
