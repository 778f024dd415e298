"""Time-driven changes when they fall due, and population cut-offs on a schedule."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.consumer.progress import PartitionProgress
from classifier.db import unit_of_work
from classifier.engine import (
    to_micros,
)
from classifier.jobs import repository as jobs_repository
from classifier.metrics import CLASS_CHANGES, REVIEW_LAG
from classifier.models import Customer
from classifier.processing.batch import BatchProcessor
from classifier.schemes.cutoffs import refresh_cutoffs
from classifier.schemes.service import SchemeCache

log = logging.getLogger(__name__)


async def earliest_due(session: AsyncSession, partitions: Sequence[int] | None) -> int | None:
    """The earliest `next_review_at` among customers of these partitions (all if None).

    One probe of ix_customers_partition_review per partition (a LATERAL
    `ORDER BY ... LIMIT 1`), so it stays cheap however many customers there are.
    """
    if partitions is None:
        due = await session.scalar(select(func.min(Customer.next_review_at)))
    else:
        due = await session.scalar(
            text(
                "SELECT min(d.next_review_at) FROM unnest(CAST(:parts AS int[])) AS p(part)"
                " CROSS JOIN LATERAL (SELECT next_review_at FROM customers"
                "  WHERE kafka_partition = p.part AND next_review_at IS NOT NULL"
                "  ORDER BY next_review_at LIMIT 1) d"
            ),
            {"parts": list(partitions)},
        )
    return to_micros(due) if due is not None else None


class ReviewScheduler:
    """Applies time-driven changes when they fall due, and refreshes rank cut-offs.

    It does not poll the database: it reads the earliest due `next_review_at`
    of its partitions (one indexed query) and sleeps until then. It reads it
    again when woken (a committed batch, a partition change, a NOTIFY of new
    class changes: see `wake`) and at least every `review_max_sleep_seconds`
    (writers that wake nobody, e.g. a silent re-baseline). Between reads it
    only compares the clock with that instant every `review_interval_seconds`
    (no I/O), so an injected clock that jumps is noticed too.
    """

    def __init__(
        self,
        settings: ClassifierSettings,
        sessions: async_sessionmaker[AsyncSession],
        processor: BatchProcessor,
        schemes: SchemeCache,
        clock: Clock,
        progress: PartitionProgress | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._processor = processor
        self._schemes = schemes
        self._clock = clock
        self._progress = progress
        self._woken = progress.changed if progress is not None else asyncio.Event()
        # Cut-offs are computed at start-up once the backlog is consumed (never from a
        # half-consumed one), when asked (an activation finished), after a bulk load,
        # when the events applied since reach a share of the population, and on schedule.
        self._cutoffs_due = time.monotonic() + settings.cutoffs_interval_seconds
        self._cutoffs_requested = settings.cutoffs_on_start  # the start-up computation
        self._cutoffs_at = -math.inf  # monotonic instant of the last computation
        self._population = 0  # customers at the last computation

    def wake(self) -> None:
        """Re-read the earliest due instant now (something may have brought it forward)."""
        self._woken.set()

    def _partitions(self) -> list[int] | None:
        return None if self._progress is None else sorted(self._progress.caught_up)

    async def earliest_due(self) -> int | None:
        """When the next customer of this worker's caught-up partitions falls due."""
        partitions = self._partitions()
        if partitions == []:
            return None
        async with unit_of_work(self._sessions) as session:
            return await earliest_due(session, partitions)

    async def review_once(self) -> int:
        """Apply every due time-driven change now; returns how many changes.

        With a consumer attached, only customers of partitions it owns and has
        consumed to the end are reviewed (see PartitionProgress).
        """
        partitions = self._partitions()
        if partitions == []:
            return 0
        total = 0
        while True:
            now = self._clock()
            changes = await self._processor.review_due(
                now, self._settings.review_batch_size, partitions
            )
            for c in changes:
                CLASS_CHANGES.labels(dimension=c.dimension, reason=c.reason.value).inc()
                REVIEW_LAG.observe(max(now - c.at, 0) / 1_000_000)
            total += len(changes)
            if not changes:
                return total

    def request_cutoffs(self) -> None:
        """Recompute the cut-offs soon (e.g. a scheme activation finished re-evaluating)."""
        self._cutoffs_requested = True
        self.wake()

    async def recompute_cutoffs(self) -> int:
        """Recompute rank cut-offs; schedule a review for customers whose class flips."""
        flagged = await refresh_cutoffs(self._sessions, self._schemes, self._clock())
        async with self._sessions() as session:
            self._population = int(
                await session.scalar(
                    select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None))
                )
                or 0
            )
        return flagged

    def _population_moved(self) -> bool:
        """The events applied since the last computation reach the configured share of
        the population (a fresh stack's first orders: any event at all)."""
        progress = self._progress
        if progress is None or progress.events_since_cutoffs == 0:
            return False
        share = self._settings.cutoffs_population_share
        return share > 0 and progress.events_since_cutoffs >= share * self._population

    def _cutoffs_due_now(self) -> bool:
        """On schedule; otherwise, once the backlog is consumed: at start-up or when
        asked, after a bulk load, or when the population moved by its share (at most
        once per `cutoffs_min_interval_seconds` for the last three)."""
        mono = time.monotonic()
        if mono >= self._cutoffs_due:
            return True
        progress = self._progress
        if progress is not None and not progress.fully_caught_up:
            return False
        if mono < self._cutoffs_at + self._settings.cutoffs_min_interval_seconds:
            return False
        return (
            self._cutoffs_requested
            or self._population_moved()
            or (
                progress is not None
                and progress.events_since_cutoffs >= self._settings.cutoffs_bulk_events
            )
        )

    def _cutoffs_pending_at(self) -> float:
        """The monotonic instant the next cut-off computation may run."""
        progress = self._progress
        waiting = progress is not None and not progress.fully_caught_up
        if not waiting and (self._cutoffs_requested or self._population_moved()):
            return min(
                self._cutoffs_due, self._cutoffs_at + self._settings.cutoffs_min_interval_seconds
            )
        return self._cutoffs_due

    async def _job_unfinished(self) -> bool:
        async with self._sessions() as session:
            return await jobs_repository.unfinished(session) is not None

    async def _refresh_cutoffs_if_due(self) -> None:
        if not self._cutoffs_due_now():
            return
        if time.monotonic() < self._cutoffs_due and await self._job_unfinished():
            # A scheme job re-evaluates everyone under the cut-offs stored at its
            # activation; its end asks for new ones (request_cutoffs). Retry later.
            self._cutoffs_requested = True
            self._cutoffs_at = time.monotonic()
            return
        if self._progress is not None:
            # Events applied while computing count towards the next computation.
            self._progress.events_since_cutoffs = 0
        asked, self._cutoffs_requested = self._cutoffs_requested, False
        try:
            flagged = await self.recompute_cutoffs()
        except Exception:
            self._cutoffs_requested = asked  # still owed after the retry pause
            raise
        if flagged:
            log.info("population cut-offs moved; %s customers flagged for review", flagged)
            self.wake()
        self._cutoffs_due = time.monotonic() + self._settings.cutoffs_interval_seconds
        self._cutoffs_at = time.monotonic()

    def _sleep_seconds(self, due: int | None, read_at: float) -> float:
        """Until the earliest of: the due instant, the next forced read, the cut-off
        refresh, and the next clock comparison."""
        mono = time.monotonic()
        wait = min(
            read_at + self._settings.review_max_sleep_seconds - mono,
            self._cutoffs_pending_at() - mono,
            self._settings.review_interval_seconds,
        )
        if due is not None:
            wait = min(wait, (due - self._clock()) / 1_000_000)
        return max(wait, 0.0)

    async def run(self, stopping: asyncio.Event) -> None:
        due: int | None = None
        read_at = -math.inf  # monotonic instant `due` was read; -inf: read it now
        while not stopping.is_set():
            try:
                await self._refresh_cutoffs_if_due()
                if self._woken.is_set():
                    self._woken.clear()
                    read_at = -math.inf
                if time.monotonic() - read_at >= self._settings.review_max_sleep_seconds:
                    due, read_at = await self.earliest_due(), time.monotonic()
                if due is not None and self._clock() >= due:
                    changed = await self.review_once()
                    head, due = due, await self.earliest_due()
                    read_at = time.monotonic()
                    if changed == 0 and due is not None and due <= head:
                        # The head did not move (its rows locked by a batch and skipped):
                        # retry after a pause or the batch's commit, not in a tight loop.
                        await _pause(stopping, self._settings.review_interval_seconds, self._woken)
                    continue
            except Exception:
                log.exception("review scheduler failed; retrying")
                due, read_at = None, -math.inf
                await _pause(stopping, self._settings.review_interval_seconds)
                continue
            await _pause(stopping, self._sleep_seconds(due, read_at), self._woken)


async def _pause(
    stopping: asyncio.Event, seconds: float, woken: asyncio.Event | None = None
) -> None:
    """Sleep `seconds`, or less if stopping (or `woken`) is set meanwhile."""
    events = [stopping] if woken is None else [stopping, woken]
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
