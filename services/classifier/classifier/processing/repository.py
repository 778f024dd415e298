"""SQL for the worker: load and save customer state, changes, history, inbox."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import orjson
from sqlalchemy import Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from classifier import facts_log
from classifier.db import select_list, unnest
from classifier.engine import CompiledScheme, CustomerFacts
from classifier.engine.facts import from_micros, to_micros
from classifier.engine.features import aggregates
from classifier.models import (
    ClassChange,
    ClassHistory,
    Customer,
    CustomerClass,
    PopulationCutoffs,
    ProcessedEvent,
)
from classifier.models.messaging import ERASED_DIMENSION, OUTBOX_CHANNEL
from classifier.processing.documents import render as render_document
from classifier.processing.state import Change, CustomerState, instant

log = logging.getLogger(__name__)

# Core tables: inserts with the column name "class" (the ORM attribute is `cls`).
CLASSES = cast(Table, CustomerClass.__table__)
HISTORY = cast(Table, ClassHistory.__table__)
CHANGES = cast(Table, ClassChange.__table__)
CUSTOMERS = cast(Table, Customer.__table__)
INBOX = cast(Table, ProcessedEvent.__table__)


async def claim_events(session: AsyncSession, items: Sequence[tuple[str, str]]) -> set[str]:
    """Record (event id, customer id) pairs in the inbox; returns the ids not seen before.

    In event id order, so two batches claiming overlapping events wait for each
    other in one order and never deadlock.
    """
    if not items:
        return set()
    source, params = unnest([("e", "text"), ("c", "text")], items)
    rows = await session.execute(
        text(
            f"INSERT INTO inbox (event_id, customer_id) SELECT e, c FROM {source} "
            "ORDER BY e ON CONFLICT DO NOTHING RETURNING event_id"
        ),
        params,
    )
    return set(rows.scalars())


async def forget_customers(session: AsyncSession, event_ids: Sequence[str]) -> None:
    """Keep these events claimed, without the customer id they were claimed with."""
    await session.execute(
        text("UPDATE inbox SET customer_id = '' WHERE event_id = ANY(:ids)"),
        {"ids": list(event_ids)},
    )


def _state_from_row(row: Any) -> CustomerState:
    return CustomerState(
        customer_id=row.id,
        facts=CustomerFacts.from_doc(row.id, row.facts),
        classes=dict(row.classes),
        features=dict(row.features),
        motion=dict(row.motion or {}),
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
    Customer.facts_through,
    Customer.classes,
    Customer.features,
    Customer.motion,
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
    return await _with_tails(session, rows)


async def _with_tails(session: AsyncSession, rows: Sequence[Any]) -> dict[str, CustomerState]:
    """States from their rows, with the facts logged after each document folded in
    (the document is a checkpoint: see save_states)."""
    states = {row.id: _state_from_row(row) for row in rows}
    facts = {cid: s.facts for cid, s in states.items()}
    folded, rebuilt = await facts_log.catch_up(
        session, facts, {row.id: row.facts_through for row in rows}
    )
    for cid, n in folded.items():
        states[cid].facts = facts[cid]
        states[cid].unsaved_facts = n
    for cid in rebuilt:
        states[cid].doc_due = True
    return states


# The row version (see processing/cache.py): a new one at every write of the row.
ROW_VERSION = "xmin::text"


async def load_states_versioned(
    session: AsyncSession, customer_ids: Iterable[str], known: Mapping[str, str]
) -> tuple[dict[str, CustomerState], set[str], dict[str, str]]:
    """Lock these customers (sorted) and load those whose row version is not the one
    in `known`. Returns the loaded states, the ids whose row is still at the known
    version (not decoded: the caller's state is current), and every row's version."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}, set(), {}
    source, params = unnest([("id", "text"), ("v", "text")], [(i, known.get(i)) for i in ids])
    changed = "c.xmin::text IS DISTINCT FROM t.v"
    columns = ", ".join(
        f"CASE WHEN {changed} THEN c.{col.key} END AS {col.key}" for col in STATE_COLUMNS[1:]
    )
    rows = await session.execute(
        text(
            f"SELECT c.id, c.{ROW_VERSION} AS row_version, {changed} AS fresh, {columns} "
            f"FROM {source} JOIN customers c ON c.id = t.id ORDER BY c.id FOR UPDATE OF c"
        ),
        params,
    )
    fresh: list[Any] = []
    current: set[str] = set()
    versions: dict[str, str] = {}
    for row in rows:
        versions[row.id] = row.row_version
        if row.fresh:
            fresh.append(row)
        else:
            current.add(row.id)
    return await _with_tails(session, fresh), current, versions


async def lock_due_customers(
    session: AsyncSession, now: int, limit: int, partitions: Sequence[int] | None = None
) -> dict[str, CustomerState]:
    """Lock up to `limit` due customers (of these partitions, if given), skipping busy ones."""
    # An absorbed customer is never reviewed: it holds no classes (identity/graph.py).
    due = (Customer.next_review_at <= from_micros(now)) & Customer.merged_into.is_(None)
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
    return await _with_tails(session, rows)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _unnest(
    session: AsyncSession,
    head: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    tail: str = "",
) -> None:
    """`head SELECT <columns> FROM unnest(...) tail`: any number of rows in one statement."""
    source, params = unnest(columns, rows)
    await session.execute(
        text(f"{head} SELECT {select_list(columns)} FROM {source} {tail}"), params
    )


STATE_WRITE = [
    ("id", "text"),
    ("features", "jsonb"),
    ("motion", "json"),
    ("classes", "json"),
    ("scheme_version", "int"),
    ("evaluated_at", "timestamptz"),
    ("next_review_at", "timestamptz"),
    ("last_event_id", "text"),
    ("kafka_partition", "int"),
    ("overrides", "jsonb"),
    # The public document as the API sends it (processing/documents.py).
    ("document", "bytea"),
    ("document_slots", "json"),
]
# A write that renders the document says so; any other that changes what the
# document shows empties it (the customers_document_stale trigger).
RENDERED = "document_rev = {table}.document_rev + 1"
AGGREGATE_WRITE = [
    ("order_count", "int"),
    ("gross_revenue", "numeric"),
    ("refunded_amount", "numeric"),
    ("net_revenue", "numeric"),
    ("first_order_at", "timestamptz"),
    ("last_order_at", "timestamptz"),
    ("call_count", "int"),
    ("last_call_at", "timestamptz"),
]


def _rendered(s: CustomerState) -> tuple[bytes | None, Any]:
    """The customer's public document, or none (the API then renders it from the
    columns): a shape the renderer does not know must not stop the worker."""
    try:
        return render_document(
            classes=s.classes,
            features=s.features,
            motion=s.motion,
            overrides=s.overrides,
            scheme_version=s.scheme_version,
            evaluated_at=instant(s.evaluated_at),
        )
    except Exception:
        log.exception("a customer's document could not be rendered; reads render it")
        return None, None


async def save_states(
    session: AsyncSession,
    states: Iterable[CustomerState],
    scheme: CompiledScheme | None = None,
) -> dict[str, str]:
    """Write every changed customer row, one statement for all: facts and aggregates
    only where the facts changed (a re-evaluation or a review only rewrites classes,
    features, review time). With the scheme, facts beyond its horizon are first
    folded into the summary of the past. Returns each written row's new version."""
    versions: dict[str, str] = {}
    documents: list[list[Any]] = []  # facts document, aggregates, state
    counted: list[list[Any]] = []  # aggregates and state: the document is a checkpoint
    light: list[list[Any]] = []  # state only: the facts did not change
    for s in states:
        if not s.dirty:
            continue
        s.settle(scheme)
        document, slots = _rendered(s)
        row = [
            s.customer_id,
            _json(s.features),
            _json(s.motion),
            _json(s.classes),
            s.scheme_version,
            instant(s.evaluated_at),
            instant(s.next_review_at),
            s.last_event_id,
            s.kafka_partition,
            _json(s.overrides),
            document,
            _json(slots),
        ]
        if s.facts_changed:
            agg = aggregates(s.facts)
            row += [agg[k] for k, _ in AGGREGATE_WRITE]
            if s.document_due():
                documents.append([*row, _json(s.facts.to_doc())])
                s.doc_due, s.unsaved_facts = False, 0
            else:
                counted.append(row)
            s.facts_changed = False
        else:
            light.append(row)
    if documents:
        columns = STATE_WRITE + AGGREGATE_WRITE + [("facts", "jsonb")]
        names = [n for n, _ in columns]
        updates = ", ".join(f"{n} = excluded.{n}" for n in [*names[1:], "facts_through"])
        source, params = unnest(columns, documents)
        # The document includes every logged fact of the customer: this batch's too.
        through = "(SELECT coalesce(max(f.id), 0) FROM customer_facts f WHERE f.customer_id = t.id)"
        written = await session.execute(
            text(
                f"INSERT INTO customers ({', '.join(names)}, facts_through) "
                f"SELECT {select_list(columns)}, {through} FROM {source} "
                f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now(), "
                f"{RENDERED.format(table='customers')} "
                f"RETURNING id, {ROW_VERSION}"
            ),
            params,
        )
        versions.update((row[0], row[1]) for row in written)
    for rows, columns in ((counted, STATE_WRITE + AGGREGATE_WRITE), (light, STATE_WRITE)):
        if not rows:
            continue  # rows loaded from the table, so they exist
        source, params = unnest(columns, rows)
        sets = ", ".join(
            f"{n} = t.{n}::{k}" if k in ("jsonb", "json") else f"{n} = t.{n}"
            for n, k in columns[1:]
        )
        written = await session.execute(
            text(
                f"UPDATE customers c SET {sets}, updated_at = now(), {RENDERED.format(table='c')} "
                f"FROM {source} "
                f"WHERE c.id = t.id RETURNING c.id, c.{ROW_VERSION}"
            ),
            params,
        )
        versions.update((row[0], row[1]) for row in written)
    return versions


async def record_changes(
    session: AsyncSession, changes: Sequence[Change], *, announce: bool = True
) -> None:
    """Write outbox rows, current-class rows and history periods for these changes,
    one statement per table.

    `announce=False` (a silent re-baseline) keeps history and current classes
    but writes no outbox row: nothing reaches the topic or the change feed.
    """
    if not changes:
        return
    # Plain inserts without ON CONFLICT: the inbox makes every change computed
    # once, so a duplicate id is a bug to fail on.
    if announce:
        # Delivered at commit (and only then): wakes the outbox relay.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})
        await _unnest(
            session,
            "INSERT INTO class_changes (change_id, customer_id, dimension, old_class, "
            "new_class, scheme_version, reason, event_id, rule, occurred_at)",
            [
                ("change_id", "text"),
                ("customer_id", "text"),
                ("dimension", "text"),
                ("old_class", "text"),
                ("new_class", "text"),
                ("scheme_version", "int"),
                ("reason", "text"),
                ("event_id", "text"),
                ("rule", "text"),
                ("occurred_at", "timestamptz"),
            ],
            [
                (
                    c.change_id,
                    c.customer_id,
                    c.dimension,
                    c.old_class,
                    c.new_class,
                    c.scheme_version,
                    c.reason.value,
                    c.event_id,
                    c.rule,
                    from_micros(c.at),
                )
                for c in changes
            ],
        )
    latest: dict[tuple[str, str], Change] = {}
    for c in changes:
        latest[(c.customer_id, c.dimension)] = c
    await _unnest(
        session,
        'INSERT INTO customer_classes (customer_id, dimension, "class", since, scheme_version)',
        [
            ("customer_id", "text"),
            ("dimension", "text"),
            ("cls", "text"),
            ("since", "timestamptz"),
            ("scheme_version", "int"),
        ],
        [
            (c.customer_id, c.dimension, c.new_class, from_micros(c.at), c.scheme_version)
            for c in latest.values()
        ],
        'ON CONFLICT (customer_id, dimension) DO UPDATE SET "class" = excluded."class", '
        "since = excluded.since, scheme_version = excluded.scheme_version",
    )
    await _write_history(session, changes)


async def _write_history(session: AsyncSession, changes: Sequence[Change]) -> None:
    opened: dict[tuple[str, str], list[Any]] = {}
    to_close: list[tuple[str, str, Any]] = []
    new_rows: list[list[Any]] = []
    for c in changes:
        key = (c.customer_id, c.dimension)
        if key in opened:
            opened[key][4] = from_micros(c.at)  # valid_to of the period this change ends
        elif c.old_class is not None:
            to_close.append((c.customer_id, c.dimension, from_micros(c.at)))
        row = [
            c.customer_id,
            c.dimension,
            c.new_class,
            from_micros(c.at),
            None,
            c.change_id,
            c.reason.value,
            c.scheme_version,
        ]
        opened[key] = row
        new_rows.append(row)
    if to_close:
        source, params = unnest([("c", "text"), ("d", "text"), ("at", "timestamptz")], to_close)
        await session.execute(
            text(
                f"UPDATE class_history h SET valid_to = t.at FROM {source} "
                "WHERE h.customer_id = t.c AND h.dimension = t.d AND h.valid_to IS NULL"
            ),
            params,
        )
    await _unnest(
        session,
        'INSERT INTO class_history (customer_id, dimension, "class", valid_from, valid_to, '
        "change_id, reason, scheme_version)",
        [
            ("customer_id", "text"),
            ("dimension", "text"),
            ("cls", "text"),
            ("valid_from", "timestamptz"),
            ("valid_to", "timestamptz"),
            ("change_id", "text"),
            ("reason", "text"),
            ("scheme_version", "int"),
        ],
        new_rows,
    )


async def prune_inbox(session: AsyncSession, before: Any, limit: int) -> int:
    """Delete up to `limit` inbox rows processed before `before`; returns how many."""
    result = await session.execute(
        text(
            "DELETE FROM inbox WHERE event_id IN (SELECT event_id FROM inbox "
            "WHERE processed_at < :before ORDER BY processed_at LIMIT :n)"
        ),
        {"before": before, "n": limit},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def load_cutoffs(session: AsyncSession, scheme_version: int) -> dict[str, dict[str, float]]:
    rows = await session.execute(
        select(PopulationCutoffs.dimension, PopulationCutoffs.cutoffs).where(
            PopulationCutoffs.scheme_version == scheme_version
        )
    )
    return {dim: dict(cuts) for dim, cuts in rows.all()}


async def customer_ids_page(session: AsyncSession, *, after: str | None, limit: int) -> list[str]:
    """Customer ids in id order after `after` (keyset pagination, no OFFSET)."""
    # Absorbed customers (merged into another) hold nothing to evaluate.
    stmt = select(Customer.id).where(Customer.merged_into.is_(None)).order_by(Customer.id)
    stmt = stmt.limit(limit)
    if after is not None:
        stmt = stmt.where(Customer.id > after)
    return list(await session.scalars(stmt))


async def count_customers(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None))
        )
        or 0
    )


async def is_empty(session: AsyncSession) -> bool:
    """True when no event was ever applied to this database."""
    applied = await session.scalar(select(ProcessedEvent.event_id).limit(1))
    return applied is None and await count_customers(session) == 0


async def mark_all_published(session: AsyncSession) -> int:
    """Mark every unpublished change as published (a silent rebuild announces nothing);
    erasure records, which only exist to be announced, go."""
    await session.execute(
        text("DELETE FROM class_changes WHERE published_at IS NULL AND dimension = :d"),
        {"d": ERASED_DIMENSION},
    )
    result = await session.execute(
        update(CHANGES).where(CHANGES.c.published_at.is_(None)).values(published_at=func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)
