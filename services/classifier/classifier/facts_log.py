"""The facts log (`customer_facts`): every fact folded into a customer, append-only.

Written by the worker in each batch's transaction; read to rebuild a customer
whose bounded state cannot answer (engine/facts.py: a backdated fact, a scheme
the summary of the past was not built for), by the worker and by a scheme
preview, and to bring a customer's facts document, a checkpoint written every
few facts, up to date (`catch_up`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.db import select_list, unnest
from classifier.engine.facts import CustomerFacts, Fact, from_micros, rebuild, to_micros
from classifier.models import CustomerFactRecord

__all__ = ["append_facts", "catch_up", "load_facts", "load_tails"]


async def append_facts(
    session: AsyncSession, rows: Sequence[tuple[str, Fact, str, str | None]]
) -> None:
    """Append (customer id, fact, event id, origin) rows to the facts log, in one
    statement; origin: the customer id the event named when identity resolution
    put it on another customer (else None)."""
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
        ("o", "text"),
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
                o,
            )
            for c, f, e, o in rows
        ],
    )
    await session.execute(
        text(
            "INSERT INTO customer_facts (customer_id, kind, fact_key, at, seen, body, event_id, "
            "origin_id) "
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


async def load_tails(session: AsyncSession, through: Mapping[str, int]) -> dict[str, list[Fact]]:
    """The logged facts of these customers after the log id each one's document was
    written through (customer id -> id), in the order they were folded in."""
    if not through:
        return {}
    source, params = unnest([("c", "text"), ("n", "bigint")], list(through.items()))
    rows = await session.execute(
        text(
            "SELECT f.customer_id, f.kind, f.fact_key, f.at, f.seen, f.body "
            f"FROM {source} JOIN customer_facts f ON f.customer_id = t.c AND f.id > t.n "
            "ORDER BY f.customer_id, f.id"
        ),
        params,
    )
    out: dict[str, list[Fact]] = {}
    for cid, kind, key, at, seen, body in rows:
        out.setdefault(cid, []).append(Fact(kind, key, to_micros(at), to_micros(seen), body))
    return out


async def catch_up(
    session: AsyncSession, facts: dict[str, CustomerFacts], through: Mapping[str, int]
) -> tuple[dict[str, int], set[str]]:
    """Bring customers' facts, read from their documents (checkpoints written through
    a log id), up to the log: fold the facts logged after it, in place. A customer a
    logged fact cannot be folded into incrementally is rebuilt from the whole log.
    Returns how many facts were folded per customer, and who was rebuilt."""
    tails = await load_tails(session, through)
    folded = {cid: len(tail) for cid, tail in tails.items()}
    rebuilt: set[str] = set()
    for cid, tail in tails.items():
        state = facts[cid]
        for fact in tail:
            if state.needs_rebuild(fact):
                rebuilt.add(cid)
                break
            state.apply_fact(fact)
    if rebuilt:
        logged = await load_facts(session, sorted(rebuilt))
        for cid in rebuilt:
            facts[cid] = rebuild(cid, logged.get(cid, ()))
    return folded, rebuilt
