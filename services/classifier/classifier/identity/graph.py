"""Identity resolution: which customer an event is about, and the merges it causes.

Every event names a customer id (its subject) and may carry keyed digests of
an e-mail and a phone (eventschemas.events.identity_digest). The graph keeps
(kind, digest) -> customer in `identity_links` and absorbed ids -> survivor in
`customers.merged_into`. For one batch, inside the batch's transaction:

1. the links of every digest of the batch are created (first sight: the
   subject's customer) and locked, in (kind, digest) order;
2. the batch's events are walked in order with a union-find over customer
   ids: a digest leading to another customer merges the two (unless that
   digest is ambiguous or an unmerge keeps the two apart), a merge event
   (`crm.contact.merged`) merges its absorbed ids into its subject;
3. every customer involved is locked in id order, and the merges are written:
   facts move to the survivor (keeping their origin), absorbed customers lose
   their current classes (their history stays), links and aliases point at
   the survivor, and the audit trail and the change stream get a record.

Concurrency: two workers whose batches share a digest serialise on its link
row (step 1), so the graph ends as if the batches ran one after the other. The
survivor of an automatic merge does not depend on that order: it is the
customer id that sorts first, ids derived from an e-mail or phone (`id-e-`,
`id-p-`) after all others. If a customer this batch resolved was merged by
another worker meanwhile (seen once its row is locked), the batch is run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.db import unnest
from classifier.engine import CustomerFacts
from classifier.engine.facts import from_micros, to_micros
from classifier.locks import Lock
from classifier.models.messaging import MERGED_CLASS, MERGED_DIMENSION, OUTBOX_CHANNEL
from eventschemas.changes import ChangeReason
from eventschemas.events import ActivityEvent, CrmContactMerged, identity_digest

DERIVED_PREFIXES = ("id-e-", "id-p-")


class StaleResolution(Exception):
    """A customer this batch resolved was merged by another transaction meanwhile:
    roll back and run the batch again."""


def survivor_rank(customer_id: str) -> tuple[bool, str]:
    """The survivor of an automatic merge is the customer with the lowest rank."""
    return customer_id.startswith(DERIVED_PREFIXES), customer_id


def digests_of(event: ActivityEvent, key: bytes | None) -> list[tuple[str, str]]:
    """(kind, digest) of the e-mail and phone an event carries. Events written before
    digests existed carry the values: they are digested here when a key is set."""
    identity = event.identity
    if identity is None:
        return []
    out: list[tuple[str, str]] = []
    for kind, digest, clear in (
        ("email", identity.email_hash, identity.email),
        ("phone", identity.phone_hash, identity.phone),
    ):
        if digest is None and clear is not None and key is not None:
            digest = identity_digest(key, kind, clear)
        if digest is not None:
            out.append((kind, digest))
    return out


@dataclass(slots=True)
class Sighting:
    """What one event tells the graph."""

    subject: str
    digests: list[tuple[str, str]]
    absorb: list[str]  # a merge event: these ids become the subject's
    event_id: str | None
    at: int  # µs
    actor: str | None = None
    cause: str = "crm"  # of the merges `absorb` asks for: crm or admin


@dataclass(slots=True)
class Merge:
    survivor: str
    absorbed: str
    cause: str  # identity, crm, admin
    event_id: str | None
    at: int
    actor: str | None = None


@dataclass(slots=True)
class Link:
    customer_id: str
    subjects: list[str]
    ambiguous: bool
    changed: bool = False


@dataclass(slots=True)
class Resolution:
    target: dict[str, str] = field(default_factory=dict)  # subject -> customer
    merges: list[Merge] = field(default_factory=list)  # absorbed customers with a row
    survivors: set[str] = field(default_factory=set)


class _Components:
    """Union-find over customer ids; each set's root is its survivor."""

    def __init__(self, redirect: dict[str, str]) -> None:
        self._parent: dict[str, str] = {}
        self._redirect = redirect

    def find(self, cid: str) -> str:
        cid = self._redirect.get(cid, cid)
        root = cid
        while (up := self._parent.get(root)) is not None:
            root = up
        while cid != root:  # path compression
            nxt = self._parent[cid]
            self._parent[cid] = root
            cid = nxt
        return root

    def union(self, survivor: str, absorbed: str) -> None:
        self._parent[absorbed] = survivor


async def resolve(
    session: AsyncSession,
    sightings: Sequence[Sighting],
    *,
    ambiguous_after: int,
) -> Resolution:
    """Resolve the batch's sightings (in order), write the merges they cause, and lock
    every customer involved. Raises StaleResolution if another transaction merged one
    of them since it was read."""
    out = Resolution()
    if not sightings:
        return out
    ids = {s.subject for s in sightings} | {a for s in sightings for a in s.absorb}
    links = await _lock_links(session, sightings)
    ids |= {link.customer_id for link in links.values()}
    redirect, existing = await _read_customers(session, ids)
    tying = bool(links) or any(s.absorb for s in sightings)  # else nothing can merge
    apart = await _apart_pairs(session, {redirect.get(i, i) for i in ids}) if tying else set()
    comps = _Components(redirect)
    merges: list[Merge] = []

    def join(survivor: str, absorbed: str, cause: str, s: Sighting) -> None:
        comps.union(survivor, absorbed)
        merges.append(Merge(survivor, absorbed, cause, s.event_id, s.at, s.actor))

    for s in sightings:
        mine = comps.find(s.subject)
        for other in s.absorb:
            theirs = comps.find(other)
            if theirs != mine:
                join(mine, theirs, s.cause, s)
                apart.discard(_pair(mine, theirs))
        for key in s.digests:
            link = links[key]
            if s.subject not in link.subjects and len(link.subjects) <= ambiguous_after:
                link.subjects.append(s.subject)
                link.changed = True
                if len(link.subjects) > ambiguous_after:
                    link.ambiguous = True
            if link.ambiguous:
                continue
            mine = comps.find(s.subject)
            theirs = comps.find(link.customer_id)
            if theirs == mine or _pair(mine, theirs) in apart:
                continue
            survivor, absorbed = sorted((mine, theirs), key=survivor_rank)
            join(survivor, absorbed, "identity", s)
    for link in links.values():
        final = comps.find(link.customer_id)
        if final != link.customer_id:
            link.customer_id, link.changed = final, True
    out.target = {s.subject: comps.find(s.subject) for s in sightings}
    # Absorbed customers with a row are merged; ids without one become aliases.
    gone = {m.absorbed for m in merges}
    out.merges = [
        Merge(comps.find(m.absorbed), m.absorbed, m.cause, m.event_id, m.at, m.actor)
        for m in merges
        if m.absorbed in existing
    ]
    out.survivors = {m.survivor for m in out.merges}
    aliases = {
        cid: comps.find(cid)
        for cid in (set(out.target) | gone)
        if cid not in existing and cid not in redirect and comps.find(cid) != cid
    }
    # Lock every customer involved, in id order; re-check what was read unlocked.
    involved = set(out.target.values()) | {m.absorbed for m in out.merges}
    stale, evaluated = await lock_customers(session, involved, set(aliases), existing & involved)
    if stale:
        raise StaleResolution
    # A merged customer's time is the later of the two: history never rewinds.
    for m in out.merges:
        m.at = max(m.at, evaluated.get(m.absorbed, 0), evaluated.get(m.survivor, 0))
    await _write(session, links, out.merges, aliases, apart_removed=_removed_pairs(merges))
    return out


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _removed_pairs(merges: Iterable[Merge]) -> list[tuple[str, str]]:
    return sorted({_pair(m.survivor, m.absorbed) for m in merges if m.cause != "identity"})


async def _lock_links(
    session: AsyncSession, sightings: Sequence[Sighting]
) -> dict[tuple[str, str], Link]:
    """Create the links of digests seen for the first time (leading to the subject of
    the first event carrying them) and lock every link of the batch."""
    first: dict[tuple[str, str], str] = {}
    for s in sightings:
        for key in s.digests:
            first.setdefault(key, s.subject)
    if not first:
        return {}
    keys = sorted(first)
    source, params = unnest(
        [("k", "text"), ("d", "text"), ("c", "text")], [(k, d, first[(k, d)]) for k, d in keys]
    )
    await session.execute(
        text(
            "INSERT INTO identity_links (kind, digest, customer_id, subjects) "
            f"SELECT k, d, c, ARRAY[]::text[] FROM {source} ORDER BY k, d "
            "ON CONFLICT DO NOTHING"
        ),
        params,
    )
    source, params = unnest([("k", "text"), ("d", "text")], keys)
    rows = await session.execute(
        text(
            "SELECT l.kind, l.digest, l.customer_id, l.subjects, l.ambiguous "
            f"FROM identity_links l JOIN {source} ON l.kind = t.k AND l.digest = t.d "
            "ORDER BY l.kind, l.digest FOR UPDATE OF l"
        ),
        params,
    )
    return {(r.kind, r.digest): Link(r.customer_id, list(r.subjects), r.ambiguous) for r in rows}


async def _read_customers(
    session: AsyncSession, ids: Iterable[str]
) -> tuple[dict[str, str], set[str]]:
    """({absorbed id: survivor}, ids that have a row and are not absorbed)."""
    rows = await session.execute(
        text("SELECT id, merged_into FROM customers WHERE id = ANY(:ids)"),
        {"ids": sorted(set(ids))},
    )
    redirect: dict[str, str] = {}
    existing: set[str] = set()
    for cid, into in rows:
        if into is None:
            existing.add(cid)
        else:
            redirect[cid] = into
    return redirect, existing


async def _apart_pairs(session: AsyncSession, ids: set[str]) -> set[tuple[str, str]]:
    rows = await session.execute(
        text(
            "SELECT low_id, high_id FROM identity_apart "
            "WHERE low_id = ANY(:ids) OR high_id = ANY(:ids)"
        ),
        {"ids": sorted(ids)},
    )
    return {(a, b) for a, b in rows}


async def lock_customers(
    session: AsyncSession, ids: set[str], aliases: set[str], existing: set[str] | None = None
) -> tuple[bool, dict[str, int]]:
    """Lock these customers, and the ids about to become aliases, in id order. Returns
    whether what was read unlocked no longer holds (one of them is now absorbed, or an
    alias to be is now a customer, or one in `existing` was erased meanwhile), and each
    one's evaluation instant (µs).

    Ids without a row have no row to lock: a transaction-scoped advisory lock per id
    (every batch takes them for its customers) keeps a customer from being created by
    one batch while another makes its id an alias.
    """
    every = sorted(ids | aliases)
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:space, hashtext(x)) "
            "FROM unnest(CAST(:ids AS text[])) AS x ORDER BY x"
        ),
        {"space": int(Lock.CUSTOMER_ID), "ids": every},
    )
    rows = await session.execute(
        text(
            "SELECT id, merged_into, evaluated_at FROM customers WHERE id = ANY(:ids) "
            "ORDER BY id FOR UPDATE"
        ),
        {"ids": every},
    )
    stale = False
    evaluated: dict[str, int] = {}
    seen: set[str] = set()
    for cid, into, at in rows:
        seen.add(cid)
        stale = stale or into is not None or cid in aliases
        if at is not None:
            evaluated[cid] = to_micros(at)
    return stale or bool((existing or set()) - seen), evaluated


def _empty_doc(customer_id: str) -> str:
    return orjson.dumps(CustomerFacts(customer_id).to_doc()).decode()


async def _write(
    session: AsyncSession,
    links: dict[tuple[str, str], Link],
    merges: list[Merge],
    aliases: dict[str, str],
    *,
    apart_removed: list[tuple[str, str]],
) -> None:
    changed = sorted((k, link) for k, link in links.items() if link.changed)
    if changed:
        source, params = unnest(
            [("k", "text"), ("d", "text"), ("c", "text"), ("s", "text"), ("a", "boolean")],
            [
                (k, d, link.customer_id, "\x1f".join(link.subjects), link.ambiguous)
                for (k, d), link in changed
            ],
        )
        await session.execute(
            text(
                "UPDATE identity_links l SET customer_id = t.c, "
                "subjects = string_to_array(t.s, chr(31)), ambiguous = t.a "
                f"FROM {source} WHERE l.kind = t.k AND l.digest = t.d"
            ),
            params,
        )
    if aliases:
        await _create_aliases(session, aliases)
    if merges:
        await absorb(session, merges)
    if apart_removed:
        source, params = unnest([("a", "text"), ("b", "text")], apart_removed)
        await session.execute(
            text(
                f"DELETE FROM identity_apart p USING {source} "
                "WHERE p.low_id = t.a AND p.high_id = t.b"
            ),
            params,
        )


async def _create_aliases(session: AsyncSession, aliases: dict[str, str]) -> None:
    """Rows for ids seen only as another customer's: they lead to it from now on."""
    items = sorted(aliases.items())
    source, params = unnest(
        [("a", "text"), ("s", "text"), ("f", "text")], [(a, s, _empty_doc(a)) for a, s in items]
    )
    created = await session.execute(
        text(
            "INSERT INTO customers (id, facts, features, classes, order_count, gross_revenue, "
            "refunded_amount, net_revenue, call_count, merged_into) "
            "SELECT a, f::jsonb, '{}', '{}', 0, 0, 0, 0, 0, s "
            f"FROM {source} ORDER BY a ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        params,
    )
    if len(created.all()) < len(items):
        raise StaleResolution  # another transaction made one of them a customer meanwhile


async def absorb(session: AsyncSession, merges: Sequence[Merge]) -> None:
    """Write merges whose rows are locked: facts, links and earlier aliases move to
    the survivor; the absorbed customer keeps its history but no current class; the
    audit trail and the change stream get a record each."""
    pairs = sorted({(m.absorbed, m.survivor) for m in merges})
    source, params = unnest([("a", "text"), ("s", "text")], pairs)
    empty = {a: _empty_doc(a) for a, _ in pairs}
    await session.execute(
        text(
            "UPDATE customer_facts f SET customer_id = t.s, "
            "origin_id = COALESCE(f.origin_id, f.customer_id) "
            f"FROM {source} WHERE f.customer_id = t.a"
        ),
        params,
    )
    await session.execute(
        text(
            f"UPDATE identity_links l SET customer_id = t.s FROM {source} WHERE l.customer_id = t.a"
        ),
        params,
    )
    await session.execute(
        text(f"UPDATE customers c SET merged_into = t.s FROM {source} WHERE c.merged_into = t.a"),
        params,
    )
    source3, params3 = unnest(
        [("a", "text"), ("s", "text"), ("f", "text")], [(a, s, empty[a]) for a, s in pairs]
    )
    await session.execute(
        text(
            "UPDATE customers c SET merged_into = t.s, facts = t.f::jsonb, facts_through = 0, "
            "classes = '{}', features = '{}', motion = '{}', next_review_at = NULL, "
            "order_count = 0, gross_revenue = 0, refunded_amount = 0, net_revenue = 0, "
            "call_count = 0, first_order_at = NULL, last_order_at = NULL, last_call_at = NULL, "
            f"updated_at = now() FROM {source3} WHERE c.id = t.a"
        ),
        params3,
    )
    at = {m.absorbed: from_micros(m.at) for m in merges}
    ends, end_params = unnest([("a", "text"), ("t", "timestamptz")], [(a, at[a]) for a, _ in pairs])
    await session.execute(
        text(
            f"UPDATE class_history h SET valid_to = GREATEST(t.t, h.valid_from) FROM {ends} "
            "WHERE h.customer_id = t.a AND h.valid_to IS NULL"
        ),
        end_params,
    )
    await session.execute(
        text("DELETE FROM customer_classes WHERE customer_id = ANY(:ids)"),
        {"ids": [a for a, _ in pairs]},
    )
    rows = [
        (
            m.survivor,
            m.absorbed,
            m.cause,
            m.event_id,
            m.actor,
            from_micros(m.at),
            merge_record_id(m),
        )
        for m in merges
    ]
    source4, params4 = unnest(
        [
            ("s", "text"),
            ("a", "text"),
            ("c", "text"),
            ("e", "text"),
            ("w", "text"),
            ("t", "timestamptz"),
            ("i", "text"),
        ],
        rows,
    )
    await session.execute(
        text(
            "INSERT INTO customer_merges "
            "(survivor_id, absorbed_id, cause, event_id, actor, merged_at) "
            f"SELECT s, a, c, e, w, t FROM {source4}"
        ),
        params4,
    )
    await session.execute(
        text(
            "INSERT INTO class_changes (change_id, customer_id, dimension, old_class, new_class, "
            "scheme_version, reason, event_id, rule, occurred_at) "
            f"SELECT i, s, '{MERGED_DIMENSION}', NULL, '{MERGED_CLASS}', 0, "
            f"'{ChangeReason.MERGE.value}', e, a, t FROM {source4} "
            "ON CONFLICT (change_id) DO NOTHING"
        ),
        params4,
    )
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})


def merge_record_id(m: Merge) -> str:
    """The change id of a merge's `customer.merged` record (deterministic: a replay
    of the same merge gives the same id)."""
    raw = f"merged|{m.survivor}|{m.absorbed}|{m.event_id or ''}|{m.at}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def sighting_of(
    event: ActivityEvent, event_id: str, at: int, key: bytes | None, actor: str | None
) -> Sighting:
    """The sighting of one decoded event (`actor`: its source)."""
    absorb = list(event.absorbed_ids) if isinstance(event, CrmContactMerged) else []
    return Sighting(
        subject=event.customer_id,
        digests=digests_of(event, key),
        absorb=[a for a in absorb if a != event.customer_id],
        event_id=event_id,
        at=at,
        actor=actor,
    )


class NotMergedInto(Exception):
    """An unmerge named an id that is not merged into the customer."""


async def split(
    session: AsyncSession, survivor: str, ids: Sequence[str], actor: str | None
) -> list[str]:
    """Undo merges into `survivor`: each of `ids`, and what was merged into it before,
    gets back the facts that came with its ids and the identifiers first seen with
    them; shared identifiers stay with the survivor, and the pair is kept apart from
    now on (an explicit merge still joins them). Returns the customers to rebuild."""
    home: dict[str, str] = {n: n for n in ids}
    frontier = list(ids)
    while frontier:  # what each id had absorbed before it was absorbed itself
        rows = await session.execute(
            text(
                "SELECT absorbed_id, survivor_id FROM customer_merges "
                "WHERE survivor_id = ANY(:ids) AND undone_at IS NULL"
            ),
            {"ids": frontier},
        )
        frontier = []
        for absorbed, into in rows:
            if absorbed not in home and absorbed != survivor:
                home[absorbed] = home[into]
                frontier.append(absorbed)
    await lock_customers(session, {survivor, *home}, set())
    rows = await session.execute(
        text("SELECT id, merged_into FROM customers WHERE id = ANY(:ids)"), {"ids": list(ids)}
    )
    into = dict(rows.all())
    wrong = sorted(n for n in ids if into.get(n) != survivor)
    if wrong:
        raise NotMergedInto(f"not merged into {survivor!r}: {', '.join(map(repr, wrong))}")
    pairs = sorted(home.items())
    source, params = unnest([("x", "text"), ("n", "text")], pairs)
    params["s"] = survivor
    await session.execute(
        text(
            "UPDATE customer_facts f SET customer_id = t.n, "
            "origin_id = CASE WHEN t.x = t.n THEN NULL ELSE t.x END "
            f"FROM {source} WHERE f.customer_id = :s AND f.origin_id = t.x"
        ),
        params,
    )
    await session.execute(
        text(
            "UPDATE customers c SET merged_into = CASE WHEN c.id = t.n THEN NULL ELSE t.n END, "
            f"updated_at = now() FROM {source} WHERE c.id = t.x"
        ),
        params,
    )
    await session.execute(
        text(
            "UPDATE identity_links l SET customer_id = t.n "
            f"FROM {source} WHERE l.customer_id = :s AND l.subjects[1] = t.x"
        ),
        params,
    )
    apart, apart_params = unnest([("a", "text"), ("b", "text")], [_pair(survivor, n) for n in ids])
    await session.execute(
        text(
            f"INSERT INTO identity_apart (low_id, high_id) SELECT a, b FROM {apart} "
            "ON CONFLICT DO NOTHING"
        ),
        apart_params,
    )
    await session.execute(
        text(
            "UPDATE customer_merges SET undone_at = now(), undone_by = :w "
            "WHERE survivor_id = :s AND absorbed_id = ANY(:ids) AND undone_at IS NULL"
        ),
        {"w": actor, "s": survivor, "ids": list(ids)},
    )
    return [survivor, *ids]


async def ambiguous(session: AsyncSession, limit: int) -> list[tuple[str, str, int]]:
    """(kind, digest, customers it was seen with, at least) of ambiguous identifiers."""
    rows = await session.execute(
        text(
            "SELECT kind, digest, cardinality(subjects) FROM identity_links WHERE ambiguous "
            "ORDER BY cardinality(subjects) DESC, kind, digest LIMIT :n"
        ),
        {"n": limit},
    )
    return [(k, d, n) for k, d, n in rows]
