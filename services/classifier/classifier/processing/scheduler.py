"""Time-driven changes and population cut-offs, re-checked every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import Float, cast, select, text
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
)
from classifier.engine.scheme import CompiledDimension
from classifier.locks import Lock
from classifier.metrics import CLASS_CHANGES, REVIEW_LAG
from classifier.models import Customer, CustomerClass, PopulationCutoffs
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


class ReviewScheduler:
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
        # First recompute on schedule, or sooner after a bulk load once caught up:
        # never from a half-consumed backlog at start-up.
        self._cutoffs_due = time.monotonic() + settings.cutoffs_interval_seconds

    async def review_once(self) -> int:
        """Apply every due time-driven change now; returns how many changes.

        With a consumer attached, only customers of partitions it owns and has
        consumed to the end are reviewed (see PartitionProgress).
        """
        partitions = None if self._progress is None else sorted(self._progress.caught_up)
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

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if self._cutoffs_due_now():
                    flagged = await self.recompute_cutoffs()
                    if flagged:
                        log.info(
                            "population cut-offs moved; %s customers flagged for review", flagged
                        )
                    self._cutoffs_due = time.monotonic() + self._settings.cutoffs_interval_seconds
                    if self._progress is not None:
                        self._progress.events_since_cutoffs = 0
                await self.review_once()
            except Exception:
                log.exception("review scheduler failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._settings.review_interval_seconds)
