"""Many requests, one statement: what concurrent requests ask during one turn of the
event loop is answered by ONE call of `work` (at most `in_flight` calls at a time;
what arrives meanwhile waits for the next). The re-send check and the suppression
check use it, so a request pays a share of a round trip, not a connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from eventschemas.problems import ServiceError

Ask = TypeVar("Ask")
Answer = TypeVar("Answer")


class Coalescer(Generic[Ask, Answer]):
    """`work(asks)` answers every ask of a turn, in order; an exception it raises is
    every waiting request's (a ServiceError such as a 503 is only theirs; anything
    else, a bug or a cancellation, is also re-raised in the background task)."""

    def __init__(
        self, work: Callable[[Sequence[Ask]], Awaitable[Sequence[Answer]]], in_flight: int = 4
    ) -> None:
        self._work = work
        self._limit = in_flight
        self._waiting: list[tuple[Ask, asyncio.Future[Answer]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def ask(self, ask: Ask) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((ask, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        # At the end of this turn of the loop: every request of the turn joins.
        if self._waiting and not self._scheduled and len(self._in_flight) < self._limit:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._schedule()

    async def _run(self, batch: list[tuple[Ask, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._work([ask for ask, _ in batch])
        except BaseException as exc:  # nobody waits for ever
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, ServiceError):
                return
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
