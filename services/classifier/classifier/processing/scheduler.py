"""Time-driven changes when they fall due, and population cut-offs on a schedule."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Float, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.consumer.progress import PartitionProgress
from classifier.db import unit_of_work
from classifier.engine import (
    CompiledScheme,
    compute_cutoffs,
    from_micros,
    rank_dimensions,
    to_micros,
)
from classifier.engine.scheme import CompiledDimension
from classifier.locks import Lock
from classifier.metrics import CLASS_CHANGES, REVIEW_LAG
from classifier.models import Customer, CustomerClass, PopulationCutoffs
from classifier.models.messaging import OUTBOX_CHANNEL
from classifier.processing.batch import BatchProcessor
from classifier.schemes.service import SchemeCache

log = logging.getLogger(__name__)
CUTOFF_LOCK = int(Lock.CUTOFFS)


async def population_cutoffs(
    session: AsyncSession, scheme: CompiledScheme
) -> list[tuple[CompiledDimension, dict[str, float]]]:
    """Cut-offs of the scheme's rank dimensions over the stored feature values."""
    result = []
    for dim in rank_dimensions(scheme):
        spec = dim.spec.rank
        assert spec is not None
        value = cast(Customer.features[spec.feature].astext, Float)
        values = [v for v in await session.scalars(select(value)) if v is not None]
        result.append((dim, compute_cutoffs(dim, values)))
    return result


async def store_cutoffs(
    session: AsyncSession, scheme: CompiledScheme
) -> list[tuple[CompiledDimension, dict[str, float]]]:
    """Compute and store the rank cut-offs the scheme's evaluations use."""
    computed = await population_cutoffs(session, scheme)
    for dim, cuts in computed:
        now = datetime.now(UTC)
        await session.execute(
            insert(PopulationCutoffs)
            .values(
                dimension=dim.name, scheme_version=scheme.version, cutoffs=cuts, computed_at=now
            )
            .on_conflict_do_update(
                index_elements=[PopulationCutoffs.dimension],
                set_={"scheme_version": scheme.version, "cutoffs": cuts, "computed_at": now},
            )
        )
    return computed


async def refresh_cutoffs(
    sessions: async_sessionmaker[AsyncSession], schemes: SchemeCache, now: int
) -> int:
    """Recompute and store rank cut-offs; flag for review (at `now`) the customers whose
    rank class they change. Returns how many were flagged (0 if another worker holds
    the cut-off lock)."""
    flagged = 0
    async with unit_of_work(sessions) as session:
        if not await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": CUTOFF_LOCK}
        ):
            return 0
        scheme = await schemes.active(session)
        for dim, cuts in await store_cutoffs(session, scheme):
            spec = dim.spec.rank
            assert spec is not None
            flagged += await _flag_flips(
                session,
                dim.name,
                spec.feature,
                [(c, cuts[c]) for c in dim.classes if c in cuts],
                dim.default or dim.classes[-1],
                now,
            )
        if flagged:
            # Flagged customers of every partition are due now: wake each worker's
            # scheduler (they listen on the outbox channel), not only this one's.
            await session.execute(text("SELECT pg_notify(:c, '')"), {"c": OUTBOX_CHANNEL})
    return flagged


async def _flag_flips(
    session: AsyncSession,
    dimension: str,
    feature: str,
    cuts: list[tuple[str, float]],
    fallback: str,
    now: int,
) -> int:
    """Mark due for review only those customers whose rank class would change (the
    rank dimension itself is due: a review evaluates only the dimensions due)."""
    cases = " ".join(f"WHEN v > 0 AND v >= :cut{i} THEN :cls{i}" for i in range(len(cuts)))
    params: dict[str, object] = {
        "dim": dimension,
        "feature": feature,
        "fallback": fallback,
        "now": from_micros(now),
        "now_us": now,
    }
    for i, (cls, cut) in enumerate(cuts):
        params[f"cut{i}"], params[f"cls{i}"] = cut, cls
    expected = f"CASE {cases} ELSE :fallback END" if cuts else ":fallback"
    # The rows are locked in id order, as the batch path locks them
    # (load_states), so the two can wait for each other but never deadlock.
    sql = f"""
        WITH flips AS (
            SELECT s.id FROM (
                SELECT c2.id, (c2.features->>:feature)::float AS v, cc.class AS current,
                       c2.next_review_at
                FROM customers c2
                LEFT JOIN {CustomerClass.__tablename__} cc
                  ON cc.customer_id = c2.id AND cc.dimension = :dim) s
            WHERE s.current IS DISTINCT FROM ({expected})
        ), locked AS (
            SELECT c.id FROM customers c JOIN flips f ON f.id = c.id
            ORDER BY c.id FOR UPDATE OF c
        )
        UPDATE customers c
        SET next_review_at = LEAST(COALESCE(c.next_review_at, :now), :now),
            classes = CASE WHEN c.classes ? :dim
                THEN jsonb_set(c.classes, ARRAY[:dim, 'review_at'],
                               to_jsonb(CAST(:now_us AS bigint)))
                ELSE c.classes END
        FROM locked l
        WHERE c.id = l.id
    """
    result = await session.execute(text(sql), params)
    return int(getattr(result, "rowcount", 0) or 0)


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
        # First recompute on schedule, or sooner after a bulk load once caught up:
        # never from a half-consumed backlog at start-up.
        self._cutoffs_due = time.monotonic() + settings.cutoffs_interval_seconds

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

    async def recompute_cutoffs(self) -> int:
        """Recompute rank cut-offs; schedule a review for customers whose class flips."""
        return await refresh_cutoffs(self._sessions, self._schemes, self._clock())

    def _cutoffs_due_now(self) -> bool:
        """On schedule, or after a bulk load once the backlog is consumed."""
        if time.monotonic() >= self._cutoffs_due:
            return True
        progress = self._progress
        return (
            progress is not None
            and progress.fully_caught_up
            and progress.events_since_cutoffs >= self._settings.cutoffs_bulk_events
        )

    async def _refresh_cutoffs_if_due(self) -> None:
        if not self._cutoffs_due_now():
            return
        flagged = await self.recompute_cutoffs()
        if flagged:
            log.info("population cut-offs moved; %s customers flagged for review", flagged)
            self.wake()
        self._cutoffs_due = time.monotonic() + self._settings.cutoffs_interval_seconds
        if self._progress is not None:
            self._progress.events_since_cutoffs = 0

    def _sleep_seconds(self, due: int | None, read_at: float) -> float:
        """Until the earliest of: the due instant, the next forced read, the cut-off
        refresh, and the next clock comparison."""
        mono = time.monotonic()
        wait = min(
            read_at + self._settings.review_max_sleep_seconds - mono,
            self._cutoffs_due - mono,
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
