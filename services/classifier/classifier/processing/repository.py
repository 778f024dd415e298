"""SQL for the worker: load and save customer state, changes, history, inbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.engine import CompiledScheme, CustomerFacts
from classifier.engine.facts import Fact, from_micros, to_micros
from classifier.engine.features import aggregates
from classifier.models import (
    ClassChange,
    ClassHistory,
    Customer,
    CustomerClass,
    CustomerFactRecord,
    PopulationCutoffs,
    ProcessedEvent,
)
from classifier.models.messaging import OUTBOX_CHANNEL
from classifier.processing.state import Change, CustomerState, instant

# Core tables: inserts with the column name "class" (the ORM attribute is `cls`).
CLASSES = cast(Table, CustomerClass.__table__)
HISTORY = cast(Table, ClassHistory.__table__)
CHANGES = cast(Table, ClassChange.__table__)
CUSTOMERS = cast(Table, Customer.__table__)
INBOX = cast(Table, ProcessedEvent.__table__)


async def seen_event_ids(session: AsyncSession, event_ids: Sequence[str]) -> set[str]:
    """The ids among these that were already applied."""
    if not event_ids:
        return set()
    rows = await session.scalars(
        select(ProcessedEvent.event_id).where(ProcessedEvent.event_id.in_(event_ids))
    )
    return set(rows)


def _state_from_row(row: Any) -> CustomerState:
    return CustomerState(
        customer_id=row.id,
        facts=CustomerFacts.from_doc(row.id, row.facts),
        classes=dict(row.classes),
        features=dict(row.features),
        scheme_version=row.scheme_version,
        evaluated_at=to_micros(row.evaluated_at) if row.evaluated_at else None,
        next_review_at=to_micros(row.next_review_at) if row.next_review_at else None,
        last_event_id=row.last_event_id,
        kafka_partition=row.kafka_partition,
        overrides=dict(row.overrides),
    )


STATE_COLUMNS = (
    Customer.id,
    Customer.facts,
    Customer.classes,
    Customer.features,
    Customer.scheme_version,
    Customer.evaluated_at,
    Customer.next_review_at,
    Customer.last_event_id,
    Customer.kafka_partition,
    Customer.overrides,
)


async def load_states(
    session: AsyncSession, customer_ids: Iterable[str], *, skip_locked: bool = False
) -> dict[str, CustomerState]:
    """Lock and load these customers in one query (sorted, so lock order is stable)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    stmt = (
        select(*STATE_COLUMNS)
        .where(Customer.id.in_(ids))
        .order_by(Customer.id)
        .with_for_update(skip_locked=skip_locked)
    )
    rows = (await session.execute(stmt)).all()
    return {row.id: _state_from_row(row) for row in rows}


async def lock_due_customers(
    session: AsyncSession, now: int, limit: int, partitions: Sequence[int] | None = None
) -> dict[str, CustomerState]:
    """Lock up to `limit` due customers (of these partitions, if given), skipping busy ones."""
    due = Customer.next_review_at <= from_micros(now)
    if partitions is not None:
        due = due & Customer.kafka_partition.in_(list(partitions))
    stmt = (
        select(*STATE_COLUMNS)
        .where(due)
        .order_by(Customer.next_review_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = (await session.execute(stmt)).all()
    return {row.id: _state_from_row(row) for row in rows}


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


async def save_states(
    session: AsyncSession,
    states: Iterable[CustomerState],
    scheme: CompiledScheme | None = None,
) -> None:
    """Write every changed customer row: facts and aggregates only where the facts
    changed (a re-evaluation or a review only rewrites classes, features, review time).
    With the scheme, facts beyond its horizon are first folded into the summary."""
    full, light = [], []
    for s in states:
        if not s.dirty:
            continue
        s.settle(scheme)
        row = {
            "id": s.customer_id,
            "features": s.features,
            "classes": s.classes,
            "scheme_version": s.scheme_version,
            "evaluated_at": instant(s.evaluated_at),
            "next_review_at": instant(s.next_review_at),
            "last_event_id": s.last_event_id,
            "kafka_partition": s.kafka_partition,
            "overrides": s.overrides,
        }
        if s.facts_changed:
            full.append(row | {"facts": s.facts.to_doc(), **aggregates(s.facts)})
            s.facts_changed = False
        else:
            light.append(row)
    if full:
        # Core, not the ORM's bulk path: executemany without per-row ORM work.
        stmt = insert(CUSTOMERS)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[CUSTOMERS.c.id],
            set_={key: getattr(excluded, key) for key in full[0] if key != "id"}
            | {"updated_at": func.now()},
        )
        await session.execute(stmt, full)
    if light:  # rows loaded from the table, so they exist
        columns = [key for key in light[0] if key != "id"]
        update_stmt = (
            update(CUSTOMERS)
            .where(CUSTOMERS.c.id == bindparam("row_id"))
            .values({key: bindparam(key) for key in columns} | {"updated_at": func.now()})
        )
        await session.execute(
            update_stmt, [{"row_id": r["id"], **{k: r[k] for k in columns}} for r in light]
        )


async def record_changes(
    session: AsyncSession, changes: Sequence[Change], *, announce: bool = True
) -> None:
    """Write outbox rows, current-class rows and history periods for these changes.

    `announce=False` (a silent re-baseline) keeps history and current classes
    but writes no outbox row: nothing reaches the topic or the change feed.
    """
    if not changes:
        return
    # Core insert without ON CONFLICT: the inbox makes every change computed
    # once, so a duplicate id is a bug to fail on, and plain inserts batch best.
    if announce:
        # Delivered at commit (and only then): wakes the outbox relay.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})
        await session.execute(
            insert(CHANGES),
            [
                {
                    "change_id": c.change_id,
                    "customer_id": c.customer_id,
                    "dimension": c.dimension,
                    "old_class": c.old_class,
                    "new_class": c.new_class,
                    "scheme_version": c.scheme_version,
                    "reason": c.reason.value,
                    "event_id": c.event_id,
                    "rule": c.rule,
                    "occurred_at": from_micros(c.at),
                }
                for c in changes
            ],
        )
    latest: dict[tuple[str, str], Change] = {}
    for c in changes:
        latest[(c.customer_id, c.dimension)] = c
    stmt = insert(CLASSES)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[CustomerClass.customer_id, CustomerClass.dimension],
            set_={
                "class": stmt.excluded["class"],
                "since": stmt.excluded.since,
                "scheme_version": stmt.excluded.scheme_version,
            },
        ),
        [
            {
                "customer_id": c.customer_id,
                "dimension": c.dimension,
                "class": c.new_class,
                "since": from_micros(c.at),
                "scheme_version": c.scheme_version,
            }
            for c in latest.values()
        ],
    )
    await _write_history(session, changes)


async def _write_history(session: AsyncSession, changes: Sequence[Change]) -> None:
    opened: dict[tuple[str, str], dict[str, Any]] = {}
    to_close: list[dict[str, Any]] = []
    new_rows: list[dict[str, Any]] = []
    for c in changes:
        key = (c.customer_id, c.dimension)
        if key in opened:
            opened[key]["valid_to"] = from_micros(c.at)
        elif c.old_class is not None:
            to_close.append({"c": c.customer_id, "d": c.dimension, "at": from_micros(c.at)})
        row = {
            "customer_id": c.customer_id,
            "dimension": c.dimension,
            "class": c.new_class,
            "valid_from": from_micros(c.at),
            "valid_to": None,
            "change_id": c.change_id,
            "reason": c.reason.value,
            "scheme_version": c.scheme_version,
        }
        opened[key] = row
        new_rows.append(row)
    if to_close:
        await session.execute(
            update(HISTORY)
            .where(
                HISTORY.c.customer_id == bindparam("c"),
                HISTORY.c.dimension == bindparam("d"),
                HISTORY.c.valid_to.is_(None),
            )
            .values(valid_to=bindparam("at")),
            to_close,
        )
    await session.execute(insert(HISTORY), new_rows)


async def mark_processed(session: AsyncSession, items: Sequence[tuple[str, str]]) -> None:
    """Record (event id, customer id) pairs in the inbox."""
    if items:
        await session.execute(
            insert(INBOX).on_conflict_do_nothing(),
            [{"event_id": e, "customer_id": c} for e, c in items],
        )


async def load_cutoffs(session: AsyncSession, scheme_version: int) -> dict[str, dict[str, float]]:
    rows = await session.execute(
        select(PopulationCutoffs.dimension, PopulationCutoffs.cutoffs).where(
            PopulationCutoffs.scheme_version == scheme_version
        )
    )
    return {dim: dict(cuts) for dim, cuts in rows.all()}


async def customer_ids_page(session: AsyncSession, *, after: str | None, limit: int) -> list[str]:
    """Customer ids in id order after `after` (keyset pagination, no OFFSET)."""
    stmt = select(Customer.id).order_by(Customer.id).limit(limit)
    if after is not None:
        stmt = stmt.where(Customer.id > after)
    return list(await session.scalars(stmt))


async def count_customers(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Customer)) or 0)


async def is_empty(session: AsyncSession) -> bool:
    """True when no event was ever applied to this database."""
    applied = await session.scalar(select(ProcessedEvent.event_id).limit(1))
    return applied is None and await count_customers(session) == 0


async def mark_all_published(session: AsyncSession) -> int:
    """Mark every unpublished change as published (a silent rebuild announces nothing)."""
    result = await session.execute(
        update(CHANGES).where(CHANGES.c.published_at.is_(None)).values(published_at=func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)
