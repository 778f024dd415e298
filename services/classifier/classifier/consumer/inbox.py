"""Bounding the inbox: event ids Kafka can no longer redeliver are forgotten.

The inbox (`inbox` table) is what makes a redelivered event apply once. Kafka
redelivers only what its log still holds, so ids older than the activity
topic's retention (7 days by default) plus a margin can go:
`CLASSIFIER_INBOX_RETENTION_HOURS` (default 192 h = 8 days). A re-send of a
forgotten event (the same order again, long after) is still harmless: facts
fold idempotently, so it changes no class; only the facts log gains a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.db import unit_of_work
from classifier.engine import from_micros
from classifier.locks import Lock
from classifier.processing import repository

log = logging.getLogger(__name__)
CHUNK = 10_000


class InboxPruner:
    """Deletes inbox rows older than the retention, a chunk per transaction."""

    def __init__(
        self,
        settings: ClassifierSettings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._clock = clock

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                pruned = await self.prune()
            except Exception:  # the next round retries; the inbox only grows meanwhile
                log.warning("inbox pruning failed; retrying in the next round", exc_info=True)
            else:
                if pruned:
                    log.info("pruned %d inbox rows", pruned)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._settings.inbox_prune_interval_seconds)

    async def prune(self) -> int:
        """Delete what is older than the retention; one worker at a time. Returns how many."""
        retention = int(self._settings.inbox_retention_hours * 3600 * 1_000_000)
        before = from_micros(self._clock() - retention)
        total = 0
        while True:
            async with unit_of_work(self._sessions) as session:
                if not await session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": int(Lock.INBOX_PRUNE)}
                ):
                    return total
                deleted = await repository.prune_inbox(session, before, CHUNK)
            total += deleted
            if deleted < CHUNK:
                return total
