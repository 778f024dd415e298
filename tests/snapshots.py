"""Comparable snapshots of classifier state (extra databases come from bench.infra)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench.infra import create_database, drop_database
from classifier import facts_log
from classifier.engine import CustomerFacts
from classifier.models import ClassChange, ClassHistory, Customer

__all__ = ["create_database", "drop_database", "snapshot"]


async def snapshot(url: str) -> dict[str, Any]:
    """Everything a replay must reproduce: facts, classes, explanations, history, changes."""
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            # A customer's facts as the worker reads them: its document (a
            # checkpoint, written every few facts) with the facts logged since.
            rows = (await session.execute(select(Customer))).scalars().all()
            facts = {row.id: CustomerFacts.from_doc(row.id, row.facts) for row in rows}
            await facts_log.catch_up(session, facts, {row.id: row.facts_through for row in rows})
            customers = {
                row.id: (
                    facts[row.id].to_doc(),
                    row.classes,
                    row.features,
                    row.evaluated_at,
                    row.next_review_at,
                    row.order_count,
                    row.net_revenue,
                )
                for row in rows
            }
        async with engine.connect() as conn:
            history = [
                tuple(row)
                for row in await conn.execute(
                    select(
                        ClassHistory.customer_id,
                        ClassHistory.dimension,
                        ClassHistory.cls,
                        ClassHistory.valid_from,
                        ClassHistory.valid_to,
                        ClassHistory.change_id,
                        ClassHistory.reason,
                    ).order_by(
                        # Several events at one instant give zero-length periods that
                        # start with the next one: valid_to and change_id break the tie.
                        ClassHistory.customer_id,
                        ClassHistory.dimension,
                        ClassHistory.valid_from,
                        ClassHistory.valid_to.asc().nulls_last(),
                        ClassHistory.change_id,
                    )
                )
            ]
            changes = {
                row.change_id: tuple(row)
                for row in await conn.execute(
                    select(
                        ClassChange.change_id,
                        ClassChange.customer_id,
                        ClassChange.dimension,
                        ClassChange.old_class,
                        ClassChange.new_class,
                        ClassChange.reason,
                        ClassChange.event_id,
                        ClassChange.occurred_at,
                    )
                )
            }
    finally:
        await engine.dispose()
    return {"customers": customers, "history": history, "changes": changes}
