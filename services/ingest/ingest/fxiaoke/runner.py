"""Wiring of the sync process: settings -> client, cursor store, publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ingest.config import IngestSettings
from ingest.fxiaoke.client import FxiaokeClient, FxiaokeNotConfigured
from ingest.fxiaoke.cursors import CursorStore
from ingest.fxiaoke.mapping import load_mapping
from ingest.fxiaoke.sync import FxiaokeSync
from ingest.publisher import EventPublisher


@asynccontextmanager
async def open_sync(settings: IngestSettings) -> AsyncIterator[FxiaokeSync]:
    """A ready FxiaokeSync; everything it opened is closed on exit."""
    if not settings.database_url:
        raise FxiaokeNotConfigured("set DATABASE_URL (the sync keeps its cursors in PostgreSQL)")
    mapping = load_mapping(settings.fxiaoke_mapping_file)
    client = FxiaokeClient(settings)
    store = CursorStore.connect(settings.database_url)
    publisher = EventPublisher(settings)
    try:
        await publisher.start()
        yield FxiaokeSync(settings, mapping, client, store, publisher)
    finally:
        await publisher.stop()
        await store.close()
        await client.aclose()
