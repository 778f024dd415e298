"""Incremental Fxiaoke sync: page each object by last_modified_time, publish, advance.

Per object the query asks for records with `last_modified_time >= cursor`,
oldest first (ties by `_id`), and skips those at or before the cursor, so
records sharing one modification instant across a page boundary are neither
lost nor published twice. A page's events are published (and acknowledged)
before its cursor is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventschemas.envelope import Envelope
from ingest.config import IngestSettings
from ingest.fxiaoke.client import FxiaokeClient
from ingest.fxiaoke.cursors import Cursor, CursorStore
from ingest.fxiaoke.mapping import MODIFIED, FxiaokeMapping, RecordMapper, modified_ms
from ingest.metrics import (
    FXIAOKE_LAST_SUCCESS,
    FXIAOKE_PASSES,
    FXIAOKE_RECORDS,
    FXIAOKE_SUPPRESSED,
)
from ingest.publisher import EventPublisher
from ingest.suppressions import wanted_keys

log = logging.getLogger(__name__)
SOURCE = "crm/fxiaoke"

# (object, records done, total to do) after each page
Progress = Callable[[str, int, int], None]


@dataclass
class ObjectReport:
    read: int = 0
    published: int = 0
    ignored: int = 0
    total: int = 0
    suppressed: int = 0


@dataclass
class SyncReport:
    objects: dict[str, ObjectReport] = field(default_factory=dict)

    @property
    def published(self) -> int:
        return sum(r.published for r in self.objects.values())


ORDERS = [{"fieldName": MODIFIED, "isAsc": True}, {"fieldName": "_id", "isAsc": True}]


def _since(cursor: Cursor) -> dict[str, Any]:
    return {"field_name": MODIFIED, "operator": "GTE", "field_values": [cursor.modified_ms]}


def _key(record: dict[str, Any]) -> Cursor:
    return Cursor(modified_ms(record), str(record.get("_id") or ""))


class FxiaokeSync:
    def __init__(
        self,
        settings: IngestSettings,
        mapping: FxiaokeMapping,
        client: FxiaokeClient,
        store: CursorStore,
        publisher: EventPublisher,
    ) -> None:
        self._settings = settings
        self._mapping = mapping
        self._client = client
        self._store = store
        self._publisher = publisher

    async def run_once(
        self, *, since_ms: int | None = None, progress: Progress | None = None
    ) -> SyncReport:
        """Sync every configured object from its cursor (or from `since_ms`, a backfill)."""
        corp_id = await self._client.corp_id()
        mapper = RecordMapper(self._settings, self._mapping, await self._store.customers(corp_id))
        report = SyncReport()
        for object_api_name, _ in self._mapping.ordered():
            stored = await self._store.get(corp_id, object_api_name)
            start = Cursor(since_ms) if since_ms is not None else stored or Cursor(0)
            report.objects[object_api_name] = await self._sync_object(
                corp_id, object_api_name, start, mapper, progress
            )
        return report

    async def _leave_out_suppressed(
        self, envelopes: list[Envelope], report: ObjectReport
    ) -> list[Envelope]:
        """Events of erased customers or identifiers are not published (counted)."""
        if not self._settings.suppression_check:
            return envelopes
        wanted = wanted_keys(self._settings.identity_key_bytes(), envelopes)
        active = await self._store.active_suppressions(sorted({k for keys in wanted for k in keys}))
        kept = [e for e, keys in zip(envelopes, wanted, strict=True) if active.isdisjoint(keys)]
        if len(kept) < len(envelopes):
            FXIAOKE_SUPPRESSED.inc(len(envelopes) - len(kept))
            report.suppressed += len(envelopes) - len(kept)
        return kept

    async def _sync_object(
        self,
        corp_id: str,
        object_api_name: str,
        cursor: Cursor,
        mapper: RecordMapper,
        progress: Progress | None,
    ) -> ObjectReport:
        report = ObjectReport()
        limit, offset = self._settings.fxiaoke_page_size, 0
        while True:
            page = await self._client.query(
                object_api_name,
                filters=[_since(cursor)],
                orders=ORDERS,
                limit=limit,
                offset=offset,
            )
            if report.total == 0:
                report.total = page.total
            fresh = sorted(
                (r for r in page.records if MODIFIED in r and _key(r) > cursor), key=_key
            )
            if fresh:
                envelopes: list[Envelope] = []
                accounts: list[tuple[str, str]] = []
                for record in fresh:
                    mapped = mapper.map(object_api_name, record)
                    envelopes.extend(e.to_envelope(SOURCE) for e in mapped.events)
                    report.ignored += mapped.ignored is not None
                    if mapped.account:
                        accounts.append(mapped.account)
                envelopes = await self._leave_out_suppressed(envelopes, report)
                await self._publisher.publish(envelopes)
                cursor = _key(fresh[-1])
                await self._store.save(corp_id, object_api_name, cursor, accounts)
                report.read += len(fresh)
                FXIAOKE_RECORDS.labels(object=object_api_name).inc(len(fresh))
                report.published += len(envelopes)
                offset = 0
            else:
                # A full page of records already seen (one modification instant): step over.
                offset += limit
            if progress is not None:
                progress(object_api_name, report.read, max(report.total, report.read))
            if len(page.records) < limit:
                return report


async def run_forever(sync: FxiaokeSync, settings: IngestSettings, stop: asyncio.Event) -> None:
    """Sync every poll interval until `stop`; errors back off, doubling up to the maximum."""
    delay = settings.fxiaoke_poll_interval_seconds
    while not stop.is_set():
        try:
            report = await sync.run_once()
            log.info("fxiaoke sync published %d events", report.published)
            FXIAOKE_PASSES.labels(outcome="ok").inc()
            FXIAOKE_LAST_SUCCESS.set_to_current_time()
            delay = settings.fxiaoke_poll_interval_seconds
        except Exception as exc:  # a failed pass never ends the process
            FXIAOKE_PASSES.labels(outcome="failed").inc()
            log.warning("fxiaoke sync failed (%s); retrying in %.0f s", type(exc).__name__, delay)
            delay = min(delay * 2, max(settings.fxiaoke_max_backoff_seconds, delay))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
