"""Erasure and suppression, applied by the worker in a batch's transaction.

An erasure arrives as a `customer.erasure_requested` event on the activity
topic (from the API's POST /v1/erasures or from a CRM's deletion), so a replay
of the topic erases at the same point. It takes the customer its subject and
identifiers lead to, with every id merged into it: their facts, state, classes,
explanations, history, overrides, identity rows, merge records, inbox ids and
change rows go; their ids and identifiers are suppressed (as keyed digests
unlike the identity digests); the receipt gets counts per kind; and a
`customer.erased` record per id goes to the change topic (its outbox row is
deleted once published, so no table keeps the id).

Suppressed events are claimed in the inbox without their customer id and
dropped (`classifier_suppressed_events_total`).

The API carries a request out at once too (so the receipt does not wait behind
the worker's backlog); the worker, meeting the event later, finds the receipt
completed and only makes sure (deletes and suppressions again, nothing
announced twice). A replay into an empty database has no receipt: it erases.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.db import unnest
from classifier.engine.facts import from_micros, to_micros
from classifier.identity.graph import digests_of, lock_customers
from classifier.models.messaging import ERASED_CLASS, ERASED_DIMENSION, OUTBOX_CHANNEL
from eventschemas.changes import ChangeReason
from eventschemas.events import ActivityEvent, CustomerErasureRequested, suppression_digest

# What an erasure deletes, table by table: (kind in the receipt, statement). Every
# table that can hold a customer id or its identity digests is here (a test scans
# the catalogue for what is left).
_DELETES: tuple[tuple[str, str], ...] = (
    ("facts", "DELETE FROM customer_facts WHERE customer_id = ANY(:ids)"),
    ("classes", "DELETE FROM customer_classes WHERE customer_id = ANY(:ids)"),
    ("history", "DELETE FROM class_history WHERE customer_id = ANY(:ids)"),
    ("changes", "DELETE FROM class_changes WHERE customer_id = ANY(:ids)"),
    # A survivor's merge records name what it absorbed (an index on dimension).
    ("changes", "DELETE FROM class_changes WHERE dimension = '@merged' AND rule = ANY(:ids)"),
    ("inbox", "DELETE FROM inbox WHERE customer_id = ANY(:ids)"),
    ("identifiers", "DELETE FROM identity_links WHERE customer_id = ANY(:ids)"),
    (
        "merges",
        "DELETE FROM customer_merges WHERE survivor_id = ANY(:ids) OR absorbed_id = ANY(:ids)",
    ),
    ("apart", "DELETE FROM identity_apart WHERE low_id = ANY(:ids) OR high_id = ANY(:ids)"),
    ("crm_links", "DELETE FROM fxiaoke_accounts WHERE customer_id = ANY(:ids)"),
    ("customers", "DELETE FROM customers WHERE id = ANY(:ids)"),
)


@dataclass(slots=True)
class Erased:
    """What a batch's erasures did: ids erased, and what is suppressed now."""

    ids: set[str] = field(default_factory=set)
    suppressed: set[tuple[str, str]] = field(default_factory=set)


def suppression_keys(event: ActivityEvent, key: bytes) -> list[tuple[str, str]]:
    """The (kind, suppression digest) pairs an event would be suppressed under."""
    out = [("customer", suppression_digest(key, "customer", event.customer_id))]
    out += [(kind, suppression_digest(key, kind, d)) for kind, d in digests_of(event, key)]
    return out


async def suppressed_among(
    session: AsyncSession, events: Sequence[ActivityEvent], key: bytes
) -> set[int]:
    """Positions of the events whose customer id or an identifier is suppressed."""
    keyed = [(i, pair) for i, e in enumerate(events) for pair in suppression_keys(e, key)]
    if not keyed:
        return set()
    source, params = unnest([("k", "text"), ("d", "text")], sorted({p for _, p in keyed}))
    rows = await session.execute(
        text(
            f"SELECT s.kind, s.digest FROM suppressions s JOIN {source} "
            "ON s.kind = t.k AND s.digest = t.d WHERE s.lifted_at IS NULL"
        ),
        params,
    )
    hit = {(k, d) for k, d in rows}
    return {i for i, pair in keyed if pair in hit}


async def erase(
    session: AsyncSession,
    requests: Sequence[tuple[CustomerErasureRequested, str]],
    key: bytes,
) -> Erased:
    """Carry out erasure requests (event, event id) in this transaction."""
    out = Erased()
    for request, event_id in requests:
        ids, digests = await _component(session, request, key)
        await lock_customers(session, ids, set())  # as identity resolution locks them
        # Read once the locks are ours: the API's erasure of the same request, if it ran
        # meanwhile, has committed by now and its receipt counts stay as they are.
        done = await session.scalar(
            text("SELECT status = 'completed' FROM erasures WHERE id = :id"),
            {"id": uuid.UUID(request.erasure_id)},
        )
        digests |= {
            (k, d)
            for k, d in await session.execute(
                text("SELECT kind, digest FROM identity_links WHERE customer_id = ANY(:ids)"),
                {"ids": sorted(ids)},
            )
        }
        held = set(
            await session.scalars(
                text("SELECT id FROM customers WHERE id = ANY(:ids)"), {"ids": sorted(ids)}
            )
        )
        counts: dict[str, int] = {}
        for kind, statement in _DELETES:
            result = await session.execute(text(statement), {"ids": sorted(ids)})
            counts[kind] = counts.get(kind, 0) + int(getattr(result, "rowcount", 0) or 0)
        counts["ids"] = len(ids)
        counts["identifiers_suppressed"] = len(digests)
        pairs = {("customer", suppression_digest(key, "customer", i)) for i in ids}
        pairs |= {(k, suppression_digest(key, k, d)) for k, d in digests}
        await _suppress(session, sorted(pairs), request.erasure_id)
        if not done:  # carried out already (by the API, at once): the worker only makes sure
            if held:  # downstream forgets the ids it can know of (customers we held)
                await _announce(session, sorted(held), request, event_id)
            await _receipt(session, request, counts)
        out.ids |= ids
        out.suppressed |= pairs
    return out


async def _component(
    session: AsyncSession, request: CustomerErasureRequested, key: bytes
) -> tuple[set[str], set[tuple[str, str]]]:
    """Every customer id the request leads to (merged ones included), and the
    identifiers it named."""
    named = set(digests_of(request, key))
    named |= {(d.partition(":")[0], d.partition(":")[2]) for d in request.also_digests}
    asked = sorted({request.customer_id, *request.also_ids})
    roots: set[str] = set()
    rows = await session.execute(
        text("SELECT COALESCE(merged_into, id) FROM customers WHERE id = ANY(:c)"),
        {"c": asked},
    )
    roots |= {r for (r,) in rows}
    if named:
        source, params = unnest([("k", "text"), ("d", "text")], sorted(named))
        rows = await session.execute(
            text(
                "SELECT COALESCE(c.merged_into, c.id) FROM identity_links l "
                f"JOIN {source} ON l.kind = t.k AND l.digest = t.d "
                "JOIN customers c ON c.id = l.customer_id"
            ),
            params,
        )
        roots |= {r for (r,) in rows}
    ids = set(asked) | roots
    if roots:
        rows = await session.execute(
            text("SELECT id FROM customers WHERE merged_into = ANY(:roots)"),
            {"roots": sorted(roots)},
        )
        ids |= {r for (r,) in rows}
    return ids, named


async def _suppress(
    session: AsyncSession, pairs: Sequence[tuple[str, str]], erasure_id: str
) -> None:
    source, params = unnest([("k", "text"), ("d", "text")], pairs)
    params["e"] = uuid.UUID(erasure_id)
    await session.execute(
        text(
            "INSERT INTO suppressions (kind, digest, erasure_id) "
            f"SELECT k, d, :e FROM {source} ORDER BY k, d "
            "ON CONFLICT (kind, digest) DO UPDATE SET erasure_id = EXCLUDED.erasure_id, "
            "lifted_at = NULL, lifted_by = NULL, created_at = now()"
        ),
        params,
    )


async def _announce(
    session: AsyncSession, ids: Sequence[str], request: CustomerErasureRequested, event_id: str
) -> None:
    """A `customer.erased` record per id through the outbox (the relay deletes the row
    once the broker has it)."""
    at = from_micros(to_micros(request.requested_at))
    rows = [(_record_id(request.erasure_id, cid), cid) for cid in ids]
    source, params = unnest([("i", "text"), ("c", "text")], rows)
    params |= {"at": at, "e": event_id, "r": request.erasure_id}
    await session.execute(
        text(
            "INSERT INTO class_changes (change_id, customer_id, dimension, old_class, new_class, "
            "scheme_version, reason, event_id, rule, occurred_at) "
            f"SELECT i, c, '{ERASED_DIMENSION}', NULL, '{ERASED_CLASS}', 0, "
            f"'{ChangeReason.ERASURE.value}', :e, :r, :at FROM {source} "
            "ON CONFLICT (change_id) DO NOTHING"
        ),
        params,
    )
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})


def _record_id(erasure_id: str, customer_id: str) -> str:
    """One id per (erasure, customer): a record announced twice is deduplicated by it."""
    digest = hashlib.sha256(f"{erasure_id}|{customer_id}".encode()).hexdigest()[:32]
    return f"erased-{digest}"


async def _receipt(
    session: AsyncSession, request: CustomerErasureRequested, counts: dict[str, Any]
) -> None:
    """Complete the receipt (made by the API; a CRM's request gets one here)."""
    await session.execute(
        text(
            "INSERT INTO erasures (id, target_kind, status, requested_by, requested_at, "
            "completed_at, erased) VALUES (:id, 'customer', 'completed', :by, :at, now(), "
            "CAST(:erased AS jsonb)) ON CONFLICT (id) DO UPDATE SET status = 'completed', "
            "completed_at = now(), erased = EXCLUDED.erased, target = NULL, error = NULL"
        ),
        {
            "id": uuid.UUID(request.erasure_id),
            "by": request.requested_by or "unknown",
            "at": request.requested_at,
            "erased": orjson.dumps(counts).decode(),
        },
    )
