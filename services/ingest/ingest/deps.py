"""Typed FastAPI dependencies of the ingest service."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from ingest.config import IngestSettings
from ingest.publisher import EventPublisher


# async, so FastAPI calls them on the event loop: a plain `def` dependency is
# sent to the thread pool on every request (a thread hop per request).
async def get_settings(request: Request) -> IngestSettings:
    return cast(IngestSettings, request.app.state.settings)


async def get_publisher(request: Request) -> EventPublisher:
    return cast(EventPublisher, request.app.state.publisher)


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
