"""Conflicting re-sends: the same natural id and revision with another payload is a 409.

An event's id is deterministic (source, type, natural id, revision), so the
id names the fact. For every event ingest accepts it records, by that id, a
digest of each data field (digests only: values may be personal data) in the
table `intake_fingerprints`, with ONE statement for the requests and batches
of one turn of the event loop, before answering 202: `INSERT ... ON CONFLICT
DO NOTHING`, and in the same statement the rows that already existed with
other digests. An identical re-send stays an idempotent 202; a different one
names the fields that differ (also when two requests of one statement send
one id: the first is the reference).

Two first sends of one id racing each other are not told apart (both are
published; the classifier keeps the first): the check is for re-sends.
Records older than `INGEST_FINGERPRINT_RETENTION_DAYS` are pruned once an
hour by one ingest process at a time, whichever holds the advisory lock
(a re-send older than that is not compared).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
import orjson

from eventschemas.envelope import Envelope
from eventschemas.problems import FieldError
from ingest.coalesce import Coalescer
from ingest.errors import IngestError
from ingest.keys import DATABASE_ERRORS, DatabaseUnavailable

log = logging.getLogger(__name__)
PRUNE_BATCH = 10_000
# classifier.locks.Lock.INTAKE_PRUNE (every advisory lock is registered there):
# with N ingest processes (INGEST_WORKERS, replicas) one prunes, the others skip.
PRUNE_LOCK = 7_007

# Derived by ingest, not sent: a new FX rate must not turn a re-send into a conflict.
_DERIVED = frozenset({"amount_base", "base_currency"})

_CHECK = """
WITH given AS (
    SELECT * FROM unnest($1::uuid[], $2::jsonb[]) AS g(event_id, digests)
), inserted AS (
    INSERT INTO intake_fingerprints (event_id, digests)
    SELECT event_id, digests FROM given
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
SELECT f.event_id, f.digests::text AS digests
FROM intake_fingerprints f JOIN given g USING (event_id)
WHERE f.digests <> g.digests
UNION ALL
SELECT event_id, NULL FROM inserted
"""


class ConflictingResend(IngestError):
    status = 409
    slug = "conflicting-resend"
    title = "This natural id and revision were accepted with another payload"


def _canonical(field: str, value: Any) -> Any:
    """One spelling per value: 1299 and "1299.00" are one amount, +08:00 and Z one instant."""
    if isinstance(value, str) and field == "amount":
        try:
            return str(Decimal(value).normalize())
        except InvalidOperation:
            return value
    if isinstance(value, str) and field.endswith("_at"):
        try:
            return datetime.fromisoformat(value).astimezone(UTC).isoformat()
        except ValueError:
            return value
    return value


def digests(envelope: Envelope) -> dict[str, str]:
    """A short digest of each data field the sender gave (derived fields left out)."""
    return {
        name: hashlib.blake2b(
            orjson.dumps(_canonical(name, value), option=orjson.OPT_SORT_KEYS), digest_size=8
        ).hexdigest()
        for name, value in envelope.data.items()
        if name not in _DERIVED
    }


def differing(before: dict[str, str], now: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))


def conflict_errors(fields: list[str]) -> list[FieldError]:
    return [
        FieldError(
            field=name,
            location=f"body.{name}",
            message="differs from the event accepted with this id and revision: send the "
            "change with a higher `revision`",
        )
        for name in fields
    ]


# Digests by event id, as one request gives them and as the database holds them.
Given = dict[str, dict[str, str]]
_MAX_CHECKS_IN_FLIGHT = 4


@dataclass
class _Checked:
    """One request's share of a check: the stored digests of its ids that were
    accepted before with other ones, and the ids it recorded now."""

    stored: Given = field(default_factory=dict)
    recorded: list[str] = field(default_factory=list)


class Fingerprints:
    """Records what was accepted under each event id and finds conflicting re-sends.

    Concurrent requests share statements: what they give during one turn of the
    event loop is checked and recorded with ONE statement (at most
    `_MAX_CHECKS_IN_FLIGHT` at a time; the rest wait for the next), so a
    request pays a share of a round trip, not a pooled connection of its own.
    """

    def __init__(self, pool: asyncpg.Pool, *, timeout: float, retry_after: int) -> None:
        self._pool = pool
        self._timeout = timeout
        self._retry_after = retry_after
        self._statements: Coalescer[Given, _Checked] = Coalescer(self._run, _MAX_CHECKS_IN_FLIGHT)

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            "re-sends could not be checked; nothing was accepted",
            headers={"Retry-After": str(self._retry_after)},
        )

    async def record(self, envelopes: list[Envelope]) -> tuple[dict[int, list[str]], list[str]]:
        """Record the envelopes; return {position: differing fields} of the conflicting
        ones, and the ids recorded now (for `forget` if publishing fails).

        Conflicting envelopes are not recorded (the first payload stays the reference);
        two items of one batch with one id and different payloads conflict too.
        """
        conflicts: dict[int, list[str]] = {}
        first: dict[str, tuple[int, dict[str, str]]] = {}
        mine: list[dict[str, str]] = []
        for position, envelope in enumerate(envelopes):
            mine.append(digests(envelope))
            seen = first.setdefault(envelope.id, (position, mine[-1]))
            if seen[0] != position and (fields := differing(seen[1], mine[-1])):
                conflicts[position] = fields
        checked = await self._check({k: v[1] for k, v in first.items()})
        for position, envelope in enumerate(envelopes):
            stored = checked.stored.get(envelope.id)
            if (
                stored is not None
                and position not in conflicts
                and (fields := differing(stored, mine[position]))
            ):
                conflicts[position] = fields
        return conflicts, checked.recorded

    async def _check(self, given: Given) -> _Checked:
        """Check and record `given` in the next statement; its share of the outcome."""
        return await self._statements.ask(given)

    async def _run(self, batch: Sequence[Given]) -> list[_Checked]:
        merged: Given = {}
        owner: dict[str, int] = {}
        for index, given in enumerate(batch):
            for event_id, mine in given.items():
                merged.setdefault(event_id, mine)
                owner.setdefault(event_id, index)
        # Sorted: two statements inserting overlapping ids take their locks in one order.
        ids = sorted(merged)
        try:
            async with asyncio.timeout(self._timeout):
                rows = await self._pool.fetch(
                    _CHECK,
                    [uuid.UUID(i) for i in ids],
                    [orjson.dumps(merged[i]).decode() for i in ids],
                )
        except DATABASE_ERRORS as exc:
            raise self._unavailable(exc) from exc
        stored = {
            str(row["event_id"]): orjson.loads(row["digests"])
            for row in rows
            if row["digests"] is not None
        }
        inserted = {str(row["event_id"]) for row in rows if row["digests"] is None}
        out: list[_Checked] = []
        for index, given in enumerate(batch):
            checked = _Checked()
            for event_id, mine in given.items():
                if event_id in inserted and owner[event_id] == index:
                    checked.recorded.append(event_id)
                elif event_id in stored:
                    checked.stored[event_id] = stored[event_id]
                elif mine != merged[event_id]:
                    # Another request of this statement sent the id first (now the reference).
                    checked.stored[event_id] = merged[event_id]
            out.append(checked)
        return out

    async def forget(self, event_ids: list[str]) -> None:
        """Drop the records of events the broker did not take (best effort: a 503 follows)."""
        if not event_ids:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._pool.execute(
                    "DELETE FROM intake_fingerprints WHERE event_id = ANY($1::uuid[])",
                    [uuid.UUID(i) for i in event_ids],
                )
        except DATABASE_ERRORS:
            pass

    async def prune(self, retention_days: float) -> int | None:
        """Delete records older than `retention_days`, in batches; return how many, or
        None when another process holds the prune lock (it prunes this round)."""
        deleted = 0
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", PRUNE_LOCK):
                return None
            try:
                while True:
                    async with asyncio.timeout(self._timeout * 10):
                        status = await conn.execute(
                            "DELETE FROM intake_fingerprints WHERE event_id IN ("
                            " SELECT event_id FROM intake_fingerprints"
                            " WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)",
                            retention_days * 86_400,
                            PRUNE_BATCH,
                        )
                    count = int(status.split()[-1])
                    deleted += count
                    if count < PRUNE_BATCH:
                        return deleted
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", PRUNE_LOCK)

    async def prune_forever(self, retention_days: float, every_seconds: float) -> None:
        """Prune now and then every `every_seconds`; a failure waits for the next round."""
        while True:
            with contextlib.suppress(*DATABASE_ERRORS):
                deleted = await self.prune(retention_days)
                if deleted:
                    log.info("pruned %d intake fingerprints", deleted)
            await asyncio.sleep(every_seconds)
