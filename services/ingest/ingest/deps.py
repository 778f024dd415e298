"""Typed FastAPI dependencies of the ingest service."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from ingest.config import IngestSettings
from ingest.publisher import EventPublisher


def get_settings(request: Request) -> IngestSettings:
    return cast(IngestSettings, request.app.state.settings)


def get_publisher(request: Request) -> EventPublisher:
    return cast(EventPublisher, request.app.state.publisher)


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
