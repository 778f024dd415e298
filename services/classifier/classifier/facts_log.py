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

from classifier.db import select_list, unnest
from classifier.engine.facts import Fact, from_micros, to_micros
from classifier.models import CustomerFactRecord

__all__ = ["append_facts", "load_facts"]


async def append_facts(session: AsyncSession, rows: Sequence[tuple[str, Fact, str]]) -> None:
    """Append (customer id, fact, event id) rows to the facts log, in one statement."""
    if not rows:
        return
    columns = [
        ("c", "text"),
        ("k", "text"),
        ("f", "text"),
        ("a", "timestamptz"),
        ("s", "timestamptz"),
        ("b", "jsonb"),
        ("e", "text"),
    ]
    source, params = unnest(
        columns,
        [
            (
                c,
                f.kind,
                f.key,
                from_micros(f.at),
                from_micros(f.seen),
                orjson.dumps(f.body).decode(),
                e,
            )
            for c, f, e in rows
        ],
    )
    await session.execute(
        text(
            "INSERT INTO customer_facts (customer_id, kind, fact_key, at, seen, body, event_id) "
            f"SELECT {select_list(columns)} FROM {source}"
        ),
        params,
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
