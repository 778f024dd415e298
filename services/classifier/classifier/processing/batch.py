"""One polled batch -> one database transaction."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier import audit, facts_log
from classifier.config import ClassifierSettings
from classifier.db import unit_of_work
from classifier.engine import CompiledScheme, CustomerFacts
from classifier.engine.facts import Fact, fact_of, rebuild, to_micros
from classifier.identity import erasure, graph
from classifier.identity.graph import Sighting, StaleResolution
from classifier.metrics import SUPPRESSED_EVENTS
from classifier.processing import repository
from classifier.processing.cache import StateCache
from classifier.processing.state import (
    Change,
    CustomerState,
    apply_event,
    reclassify,
    review_until,
)
from classifier.schemes.service import SchemeCache
from eventschemas.changes import ChangeReason
from eventschemas.envelope import Envelope
from eventschemas.events import ActivityEvent, CrmContactMerged, CustomerErasureRequested

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One decoded activity event and the partition it came from."""

    envelope: Envelope
    event: ActivityEvent
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class IdentityOptions:
    """How the batch resolves identities (see identity/graph.py)."""

    key: bytes | None = None  # digests clear values of events from before digests
    ambiguous_after: int = 20

    @classmethod
    def of(cls, settings: ClassifierSettings) -> IdentityOptions:
        key = settings.identity_key.get_secret_value().encode() if settings.identity_key else None
        return cls(key, settings.identity_ambiguous_after)


# A batch whose customers another worker merged meanwhile runs again (graph.py).
RESOLVE_ATTEMPTS = 5


@dataclass(slots=True)
class BatchResult:
    applied: int
    duplicates: int
    changes: list[Change]


class BatchProcessor:
    """Applies decoded events exactly once: state, history, outbox and inbox together."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schemes: SchemeCache,
        cache: StateCache | None = None,
        identity: IdentityOptions | None = None,
    ) -> None:
        self._sessions = sessions
        self._schemes = schemes
        self.identity = identity or IdentityOptions()
        # The worker's states between batches (see processing/cache.py); None: none.
        self.cache = cache

    async def process(self, items: Sequence[Delivery]) -> BatchResult:
        """Apply events in their order; commits once, or raises and changes nothing."""
        written: list[tuple[dict[str, CustomerState], dict[str, str]]] = []
        for attempt in range(RESOLVE_ATTEMPTS):
            try:
                async with unit_of_work(self._sessions) as session:
                    result = await self._process(session, items, written)
                break
            except StaleResolution:
                written.clear()
                if attempt == RESOLVE_ATTEMPTS - 1:
                    raise
                log.info("a customer of the batch was merged meanwhile; running it again")
        if self.cache is not None:  # committed: the states are what the rows now hold
            for states, versions in written:
                self.cache.put(states.values(), versions)
        return result

    async def _load(
        self, session: AsyncSession, customer_ids: Iterable[str]
    ) -> dict[str, CustomerState]:
        """Lock and load these customers, from the cache where their row is unchanged."""
        if self.cache is None:
            return await repository.load_states(session, customer_ids)
        taken = self.cache.take(customer_ids)
        states, current, _ = await repository.load_states_versioned(
            session, customer_ids, {cid: version for cid, (version, _) in taken.items()}
        )
        for cid in current:
            states[cid] = taken[cid][1]
        self.cache.hits += len(current)
        self.cache.misses += len(states) - len(current)
        return states

    async def _process(
        self,
        session: AsyncSession,
        items: Sequence[Delivery],
        written: list[tuple[dict[str, CustomerState], dict[str, str]]],
    ) -> BatchResult:
        # Claiming in the inbox first is what makes an event apply once: a
        # redelivery claims nothing, and a concurrent batch with the same event
        # waits here for the first to commit (or roll back) and then claims
        # nothing (or it).
        key = self.identity.key or b""
        # Events of erased customers are claimed without their id, and dropped.
        hidden = await erasure.suppressed_among(
            session,
            [d.event for d in items if not isinstance(d.event, CustomerErasureRequested)],
            key,
        )
        ordinary = [d for d in items if not isinstance(d.event, CustomerErasureRequested)]
        gone = {ordinary[i].envelope.id for i in hidden}
        claimed = await repository.claim_events(
            session,
            [(d.envelope.id, "" if d.envelope.id in gone else d.event.customer_id) for d in items],
        )
        fresh: list[Delivery] = []
        requests: list[tuple[CustomerErasureRequested, str]] = []
        duplicates = suppressed = 0
        for item in items:
            if item.envelope.id not in claimed:
                duplicates += 1
                continue
            claimed.discard(item.envelope.id)  # a duplicate inside the same batch
            if isinstance(item.event, CustomerErasureRequested):
                requests.append((item.event, item.envelope.id))
            elif item.envelope.id in gone:
                suppressed += 1
            else:
                fresh.append(item)
        if requests:  # before the rest: an event of the batch for them is dropped too
            erased = await erasure.erase(session, requests, key)
            kept = [
                d
                for d in fresh
                if not erased.suppressed.intersection(erasure.suppression_keys(d.event, key))
            ]
            left = {d.envelope.id for d in kept}
            dropped = [d.envelope.id for d in fresh if d.envelope.id not in left]
            if dropped:  # claimed with their customer id above: keep no trace of it
                await repository.forget_customers(session, dropped)
            suppressed += len(dropped)
            fresh = kept
        if suppressed:
            SUPPRESSED_EVENTS.inc(suppressed)
        if not fresh:
            return BatchResult(len(requests), duplicates, [])
        resolution = await graph.resolve(
            session,
            [
                graph.sighting_of(
                    d.event,
                    d.envelope.id,
                    to_micros(d.envelope.time),
                    self.identity.key,
                    d.envelope.source,
                )
                for d in fresh
            ],
            ambiguous_after=self.identity.ambiguous_after,
        )
        by_customer: dict[str, list[tuple[Delivery, Fact | None]]] = defaultdict(list)
        for item in fresh:
            a_merge = isinstance(item.event, CrmContactMerged)
            fact = None if a_merge else fact_of(item.event, item.envelope.source)
            by_customer[resolution.target[item.event.customer_id]].append((item, fact))
        scheme = await self._schemes.active(session)
        cutoffs = await repository.load_cutoffs(session, scheme.version)
        states = await self._load(session, by_customer)
        for customer_id in by_customer:
            if customer_id not in states:
                states[customer_id] = CustomerState(
                    customer_id, CustomerFacts(customer_id), doc_due=True
                )
        await _fit(
            session,
            scheme,
            states,
            [
                cid
                for cid, pairs in by_customer.items()
                if cid in resolution.survivors
                or any(fact and states[cid].facts.needs_rebuild(fact) for _, fact in pairs)
            ],
        )
        changes: list[Change] = []
        for merge in resolution.merges:
            state = states[merge.survivor]
            if merge.survivor in resolution.survivors:  # once per survivor, at its first merge
                resolution.survivors.discard(merge.survivor)
                at = max(merge.at, state.evaluated_at or merge.at)
                changes += review_until(state, scheme, at, cutoffs=cutoffs)
                changes += reclassify(
                    state, scheme, at, ChangeReason.MERGE, event_id=merge.event_id, cutoffs=cutoffs
                )
        origin = {d.envelope.id: d.event.customer_id for d in fresh}
        applied = len(requests)
        for customer_id, pairs in by_customer.items():
            state = states[customer_id]
            for item, fact in pairs:
                applied += 1
                if fact is None:  # a merge event: resolved above
                    state.last_event_id = item.envelope.id
                    state.dirty = True
                    continue
                changes += apply_event(state, scheme, item.envelope, fact, cutoffs=cutoffs)
                if item.partition is not None:
                    state.kafka_partition = item.partition
        await facts_log.append_facts(
            session,
            [
                (
                    s.customer_id,
                    fact,
                    event_id,
                    None
                    if origin.get(event_id, s.customer_id) == s.customer_id
                    else origin[event_id],
                )
                for s in states.values()
                for fact, event_id in s.new_facts
            ],
        )
        written.append((states, await repository.save_states(session, states.values(), scheme)))
        await repository.record_changes(session, changes)
        return BatchResult(applied, duplicates, changes)

    async def reevaluate(
        self,
        customer_ids: Sequence[str],
        now: int,
        reason: ChangeReason,
        *,
        announce: bool = True,
        prepare: Callable[[dict[str, CustomerState]], None] | None = None,
        only: Sequence[str] | None = None,
        entry: audit.Entry | None = None,
        also: Callable[[AsyncSession, Sequence[Change]], Awaitable[None]] | None = None,
    ) -> list[Change]:
        """Bring customers up to `now`, then re-evaluate them under the active scheme:
        every dimension, or (`only`) these and those whose class does not hold under it
        (`only=()` after an activation: the dimensions whose definition changed).

        `prepare` may edit the locked states first (e.g. set an override);
        `announce=False` records no outbox rows (a silent re-baseline); `entry` is
        recorded in the audit trail in the same transaction when a customer was found;
        `also` runs last in the transaction, with the changes (e.g. a job counting them).
        """
        async with unit_of_work(self._sessions) as session:
            states = await repository.load_states(session, customer_ids)
            if prepare is not None:
                prepare(states)
            scheme = await self._schemes.active(session)
            await _fit(session, scheme, states)
            cutoffs = await repository.load_cutoffs(session, scheme.version)
            changes: list[Change] = []
            for state in states.values():
                changes += review_until(state, scheme, now, cutoffs=cutoffs)
                at = max(now, state.evaluated_at or now)
                changes += reclassify(state, scheme, at, reason, cutoffs=cutoffs, only=only)
            await repository.save_states(session, states.values(), scheme)
            await repository.record_changes(session, changes, announce=announce)
            if states:
                await audit.write(session, entry)
            if also is not None:
                await also(session, changes)
            return changes

    async def merge_by_hand(
        self,
        survivor: str,
        absorb: Sequence[str],
        now: int,
        actor: str,
        *,
        entry: audit.Entry | None = None,
    ) -> list[Change]:
        """An admin merge: `absorb` become `survivor`'s (cause `admin` in the identity
        graph, reason `merge` on the change stream, `entry` in the audit trail)."""
        sighting = Sighting(survivor, [], list(absorb), None, now, actor, cause="admin")
        for attempt in range(RESOLVE_ATTEMPTS):
            try:
                async with unit_of_work(self._sessions) as session:
                    resolution = await graph.resolve(
                        session, [sighting], ambiguous_after=self.identity.ambiguous_after
                    )
                    await audit.write(session, entry)
                    return await self._rebuild(
                        session, resolution.survivors, now, ChangeReason.MERGE
                    )
            except StaleResolution:
                if attempt == RESOLVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def unmerge(
        self,
        survivor: str,
        ids: Sequence[str],
        now: int,
        actor: str,
        *,
        entry: audit.Entry | None = None,
    ) -> list[Change]:
        """Undo merges into `survivor` (see identity/graph.py `split`); reason `unmerge`,
        `entry` in the audit trail."""
        async with unit_of_work(self._sessions) as session:
            rebuilt = await graph.split(session, survivor, ids, actor)
            await audit.write(session, entry)
            return await self._rebuild(session, rebuilt, now, ChangeReason.UNMERGE)

    async def erase_now(self, request: CustomerErasureRequested, event_id: str) -> None:
        """Carry out an erasure request at once (the API does, beside publishing it)."""
        async with unit_of_work(self._sessions) as session:
            await erasure.erase(session, [(request, event_id)], self.identity.key or b"")

    async def _rebuild(
        self, session: AsyncSession, ids: Iterable[str], now: int, reason: ChangeReason
    ) -> list[Change]:
        """Rebuild these customers from the facts log and reclassify them at `now`."""
        ids = sorted(set(ids))
        if not ids:
            return []
        states = await repository.load_states(session, ids)
        for cid in ids:
            states.setdefault(cid, CustomerState(cid, CustomerFacts(cid), doc_due=True))
        scheme = await self._schemes.active(session)
        await _fit(session, scheme, states, ids)
        cutoffs = await repository.load_cutoffs(session, scheme.version)
        changes: list[Change] = []
        for state in states.values():
            at = max(now, state.evaluated_at or now)
            changes += review_until(state, scheme, at, cutoffs=cutoffs)
            changes += reclassify(
                state,
                scheme,
                at,
                reason,
                cutoffs=cutoffs,
                keep_prior=reason != ChangeReason.UNMERGE,
            )
        await repository.save_states(session, states.values(), scheme)
        await repository.record_changes(session, changes)
        return changes

    async def review_due(
        self, now: int, limit: int, partitions: Sequence[int] | None = None
    ) -> list[Change]:
        """Apply time-driven changes for due customers (of these partitions, if given)."""
        async with unit_of_work(self._sessions) as session:
            states = await repository.lock_due_customers(session, now, limit, partitions)
            if not states:
                return []
            scheme = await self._schemes.active(session)
            await _fit(session, scheme, states)
            cutoffs = await repository.load_cutoffs(session, scheme.version)
            changes: list[Change] = []
            for state in states.values():
                changes += review_until(state, scheme, now, cutoffs=cutoffs)
                state.dirty = True
            await repository.save_states(session, states.values(), scheme)
            await repository.record_changes(session, changes)
            return changes


async def _fit(
    session: AsyncSession,
    scheme: CompiledScheme,
    states: dict[str, CustomerState],
    also: Sequence[str] = (),
) -> None:
    """Rebuild from the facts log the customers whose summary of the past does not fit
    the scheme, and those in `also` (a fact that would change their summary)."""
    ids = set(also) | {cid for cid, s in states.items() if s.needs_rebuild(scheme)}
    if not ids:
        return
    logged = await facts_log.load_facts(session, sorted(ids))
    for cid in ids:
        state = states[cid]
        state.facts = rebuild(cid, logged.get(cid, ()))
        state.facts_changed = True  # written back (compacted again) at save
        state.doc_due = True
        state.dirty = True
    log.debug("rebuilt %d customers from the facts log", len(ids))
