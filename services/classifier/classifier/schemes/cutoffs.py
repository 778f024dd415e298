"""Population cut-offs of a scheme's rank dimensions (ABC tiers): computed over the
stored feature values, stored per dimension, and the customers whose rank class
they change flagged for review."""

from __future__ import annotations

from sqlalchemy import Float, cast, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.db import unit_of_work
from classifier.engine import CompiledScheme, compute_cutoffs, from_micros, rank_dimensions
from classifier.engine.scheme import CompiledDimension
from classifier.locks import Lock
from classifier.models import Customer, CustomerClass, PopulationCutoffs
from classifier.models.messaging import OUTBOX_CHANNEL
from classifier.schemes.service import SchemeCache

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
    session: AsyncSession, scheme: CompiledScheme, now: int
) -> list[tuple[CompiledDimension, dict[str, float]]]:
    """Compute and store the rank cut-offs the scheme's evaluations use."""
    computed = await population_cutoffs(session, scheme)
    for dim, cuts in computed:
        at = from_micros(now)
        await session.execute(
            insert(PopulationCutoffs)
            .values(dimension=dim.name, scheme_version=scheme.version, cutoffs=cuts, computed_at=at)
            .on_conflict_do_update(
                index_elements=[PopulationCutoffs.dimension],
                set_={"scheme_version": scheme.version, "cutoffs": cuts, "computed_at": at},
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
        for dim, cuts in await store_cutoffs(session, scheme, now):
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
    # (load_states), so the two can wait for each other but never deadlock. A
    # customer a merge absorbed while this waited for its lock is left alone: the
    # UPDATE's own condition is checked again on the row as that merge left it.
    sql = f"""
        WITH flips AS (
            SELECT s.id FROM (
                SELECT c2.id, (c2.features->>:feature)::float AS v, cc.class AS current,
                       c2.next_review_at
                FROM customers c2
                LEFT JOIN {CustomerClass.__tablename__} cc
                  ON cc.customer_id = c2.id AND cc.dimension = :dim
                WHERE c2.merged_into IS NULL) s
            WHERE s.current IS DISTINCT FROM ({expected})
        ), locked AS (
            SELECT c.id FROM customers c JOIN flips f ON f.id = c.id
            ORDER BY c.id FOR UPDATE OF c
        )
        UPDATE customers c
        SET next_review_at = LEAST(COALESCE(c.next_review_at, :now), :now),
            classes = CASE WHEN c.classes::jsonb ? :dim
                THEN jsonb_set(c.classes::jsonb, ARRAY[:dim, 'review_at'],
                               to_jsonb(CAST(:now_us AS bigint)))::json
                ELSE c.classes END
        FROM locked l
        WHERE c.id = l.id AND c.merged_into IS NULL
    """
    result = await session.execute(text(sql), params)
    return int(getattr(result, "rowcount", 0) or 0)
