"""The facts log (`customer_facts`): every fact folded into a customer, append-only.

Written by the worker in each batch's transaction; read only to rebuild a
customer whose bounded state cannot answer (engine/facts.py: a backdated fact,
a scheme the summary of the past was not built for), by the worker and by a
scheme preview.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.engine.facts import Fact, from_micros, to_micros
from classifier.models import CustomerFactRecord

__all__ = ["append_facts", "load_facts"]


async def append_facts(session: AsyncSession, rows: Sequence[tuple[str, Fact, str]]) -> None:
    """Append (customer id, fact, event id) rows to the facts log, in one statement."""
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO customer_facts (customer_id, kind, fact_key, at, seen, body, event_id) "
            "SELECT c, k, f, a, s, b::jsonb, e FROM unnest("
            "CAST(:c AS text[]), CAST(:k AS text[]), CAST(:f AS text[]), "
            "CAST(:a AS timestamptz[]), CAST(:s AS timestamptz[]), CAST(:b AS text[]), "
            "CAST(:e AS text[])) AS t(c, k, f, a, s, b, e)"
        ),
        {
            "c": [c for c, _, _ in rows],
            "k": [f.kind for _, f, _ in rows],
            "f": [f.key for _, f, _ in rows],
            "a": [from_micros(f.at) for _, f, _ in rows],
            "s": [from_micros(f.seen) for _, f, _ in rows],
            "b": [orjson.dumps(f.body).decode() for _, f, _ in rows],
            "e": [e for _, _, e in rows],
        },
    )


async def load_facts(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, list[Fact]]:
    """Every logged fact of these customers, in the order they were folded in."""
    rows = await session.execute(
        select(
            CustomerFactRecord.customer_id,
            CustomerFactRecord.kind,
            CustomerFactRecord.fact_key,
            CustomerFactRecord.at,
            CustomerFactRecord.seen,
            CustomerFactRecord.body,
        )
        .where(CustomerFactRecord.customer_id.in_(customer_ids))
        .order_by(CustomerFactRecord.customer_id, CustomerFactRecord.id)
    )
    out: dict[str, list[Fact]] = {}
    for cid, kind, key, at, seen, body in rows.all():
        out.setdefault(cid, []).append(Fact(kind, key, to_micros(at), to_micros(seen), body))
    return out
