"""Erased customers stay erased: events of suppressed ids and identifiers are left out.

The classifier suppresses an erased customer's ids and identity digests in the
table `suppressions` (kind, digest; active while `lifted_at` is NULL), each as
`suppression_digest(key, kind, value)`: kind `customer` with the customer id,
`email`/`phone` with the identity digest. Before publishing, ingest looks up
every envelope's subject and identity digests, with ONE statement for the
requests of one turn of the event loop (as the re-send check does); a
suppressed event is not published, and the answer lists its id under
`suppressed`. Erasure requests are never suppressed (an erasure of an erased
customer is harmless, and must not be lost).

Only digests reach the database and the metric has no labels: nothing here
names a person. A database outage is a 503 and nothing is published, as for
the re-send check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from eventschemas.envelope import Envelope
from eventschemas.events import CustomerErasureRequested, suppression_digest
from ingest.coalesce import Coalescer
from ingest.keys import DATABASE_ERRORS, DatabaseUnavailable
from ingest.metrics import SUPPRESSED_EVENTS

ACTIVE_SUPPRESSIONS = """
SELECT g.kind, g.digest
FROM unnest($1::text[], $2::text[]) AS g(kind, digest)
WHERE EXISTS (
    SELECT 1 FROM suppressions s
    WHERE s.kind = g.kind AND s.digest = g.digest AND s.lifted_at IS NULL
)
"""


def suppression_keys(key: bytes, envelope: Envelope) -> list[tuple[str, str]]:
    """(kind, suppression digest) of the envelope's subject and identity digests."""
    keys = [("customer", suppression_digest(key, "customer", envelope.subject))]
    identity = envelope.data.get("identity") or {}
    for kind in ("email", "phone"):
        digest = identity.get(f"{kind}_hash")
        if isinstance(digest, str) and digest:
            keys.append((kind, suppression_digest(key, kind, digest)))
    return keys


def wanted_keys(key: bytes, envelopes: Sequence[Envelope]) -> list[list[tuple[str, str]]]:
    """Per envelope, the suppression keys that leave it out (none for an erasure request)."""
    return [
        [] if e.type == CustomerErasureRequested.TYPE else suppression_keys(key, e)
        for e in envelopes
    ]


Key = tuple[str, str]
_MAX_CHECKS_IN_FLIGHT = 4


class Suppressions:
    """Finds the envelopes of suppressed customers and identifiers.

    As the re-send check does, concurrent requests share statements: what they
    ask during one turn of the event loop is looked up with ONE statement (at
    most `_MAX_CHECKS_IN_FLIGHT` at a time; the rest wait for the next).
    """

    def __init__(self, pool: asyncpg.Pool, key: bytes, *, timeout: float, retry_after: int) -> None:
        self._pool = pool
        self._key = key
        self._timeout = timeout
        self._retry_after = retry_after
        self._statements: Coalescer[set[Key], set[Key]] = Coalescer(
            self._run, _MAX_CHECKS_IN_FLIGHT
        )

    async def suppressed(self, envelopes: Sequence[Envelope]) -> set[int]:
        """Positions of the envelopes that must not be published (counted in the metric)."""
        wanted = wanted_keys(self._key, envelopes)
        given = {k for keys in wanted for k in keys}
        if not given:
            return set()
        active = await self._statements.ask(given)
        positions = {i for i, keys in enumerate(wanted) if not active.isdisjoint(keys)}
        if positions:
            SUPPRESSED_EVENTS.inc(len(positions))
        return positions

    async def _run(self, batch: Sequence[set[Key]]) -> list[set[Key]]:
        given = sorted(set().union(*batch))
        try:
            async with asyncio.timeout(self._timeout):
                rows = await self._pool.fetch(
                    ACTIVE_SUPPRESSIONS, [k for k, _ in given], [d for _, d in given]
                )
        except DATABASE_ERRORS as exc:
            raise DatabaseUnavailable(
                "suppressions could not be checked; nothing was accepted",
                headers={"Retry-After": str(self._retry_after)},
            ) from exc
        active = {(row["kind"], row["digest"]) for row in rows}
        return [active & keys for keys in batch]


async def leave_out(
    suppressions: Suppressions | None, envelopes: list[Envelope]
) -> tuple[list[Envelope], list[str]]:
    """The envelopes to publish, and the ids of the suppressed ones (in item order)."""
    if suppressions is None or not envelopes:
        return envelopes, []
    positions = await suppressions.suppressed(envelopes)
    if not positions:
        return envelopes, []
    kept = [e for i, e in enumerate(envelopes) if i not in positions]
    return kept, [e.id for i, e in enumerate(envelopes) if i in positions]
