"""The change feed: cursor pages of announced class changes, and a live SSE stream.

Positions (`id`) are given by the outbox relay when a change is announced on
Kafka, in announcement order, so a reader that resumes after the last id it saw
(a cursor, or SSE's Last-Event-ID) never misses a change and never sees one twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, cast

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.auth import Principal, ReadAccess, require_read
from classifier.console import repository as console_sessions
from classifier.db import SessionDep
from classifier.errors import BadRequest
from classifier.models import ClassChange
from classifier.models.messaging import MERGED_DIMENSION

router = APIRouter(prefix="/v1/changes", tags=["changes"], dependencies=[ReadAccess])
POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
# A stream opened with a console session ends within this once the session does
# (sign-out, expiry, the key revoked); the browser's reconnect is then refused.
SESSION_CHECK_SECONDS = 10.0


class ChangeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int = Field(description="Feed position; resume after it.")
    change_id: str
    customer_id: str
    dimension: str = Field(
        description="The dimension; `@merged` for a merge record (then `customer_id` is "
        "the survivor, `absorbed_ids` what it absorbed, `to` is `merged`)."
    )
    from_class: str | None = Field(alias="from")
    to_class: str = Field(alias="to")
    reason: str
    rule: str | None
    event_id: str | None
    scheme_version: int
    occurred_at: datetime
    absorbed_ids: list[str] | None = None


class FeedPage(BaseModel):
    changes: list[ChangeOut]
    next_cursor: int = Field(description="Pass as `after` to continue (also when empty).")


def _out(row: ClassChange) -> ChangeOut:
    assert row.feed_seq is not None
    return ChangeOut(
        id=row.feed_seq,
        change_id=row.change_id,
        customer_id=row.customer_id,
        dimension=row.dimension,
        from_class=row.old_class,
        to_class=row.new_class,
        reason=row.reason,
        rule=row.rule,
        event_id=row.event_id,
        scheme_version=row.scheme_version,
        occurred_at=row.occurred_at,
        absorbed_ids=[row.rule] if row.dimension == MERGED_DIMENSION and row.rule else None,
    )


def _query(
    after: int, limit: int, dimension: str | None, cls: str | None, reason: str | None
) -> Select[ClassChange]:
    stmt = select(ClassChange).where(ClassChange.feed_seq > after)
    if dimension:
        stmt = stmt.where(ClassChange.dimension == dimension)
    if cls:
        stmt = stmt.where(ClassChange.new_class == cls)
    if reason:
        stmt = stmt.where(ClassChange.reason == reason)
    return stmt.order_by(ClassChange.feed_seq).limit(limit)


MAX_POSITION = 2**63 - 1  # feed positions are bigint
Dimension = Annotated[str | None, Query(max_length=64)]
ClassFilter = Annotated[str | None, Query(alias="class", max_length=64, description="New class.")]
Reason = Annotated[
    str | None, Query(pattern="^(event|time|scheme_change|override|merge)$", description="Why.")
]


@router.get("")
async def feed(
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_POSITION, description="Last id seen; 0 from the start.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    dimension: Dimension = None,
    cls: ClassFilter = None,
    reason: Reason = None,
) -> FeedPage:
    """Announced class changes after a cursor, oldest first."""
    rows = list(await session.scalars(_query(after, limit, dimension, cls, reason)))
    return FeedPage(
        changes=[_out(r) for r in rows], next_cursor=rows[-1].feed_seq if rows else after
    )


class FeedHead(BaseModel):
    position: int = Field(description="The last announced change's id; 0 when none yet.")


@router.get("/head")
async def head(session: SessionDep) -> FeedHead:
    """The feed's latest position: resume after `position - n` to see the last n changes."""
    last = await session.scalar(select(func.max(ClassChange.feed_seq)))
    return FeedHead(position=last or 0)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream."}},
)
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(require_read)],
    after: Annotated[
        int | None, Query(ge=0, le=MAX_POSITION, description="Start after this id.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    max_events: Annotated[
        int | None, Query(ge=1, le=100_000, description="Close after this many (catch-up).")
    ] = None,
    dimension: Dimension = None,
    cls: ClassFilter = None,
    reason: Reason = None,
) -> StreamingResponse:
    """Live class changes as Server-Sent Events (`id` = feed position, `event:
    class_changed`). Reconnect with `Last-Event-ID` to resume without gaps."""
    cursor = after or 0
    if last_event_id:
        if not last_event_id.isdigit() or int(last_event_id) > MAX_POSITION:
            raise BadRequest("Last-Event-ID must be an id this stream sent")
        cursor = max(cursor, int(last_event_id))
    sessions = cast(async_sessionmaker[AsyncSession], request.app.state.sessions)

    async def events() -> AsyncIterator[bytes]:
        nonlocal cursor
        sent = 0
        idle = 0.0
        checked = time.monotonic()
        yield b"retry: 1000\n\n"
        while not await request.is_disconnected():
            async with sessions() as session:
                if principal.session_id and time.monotonic() - checked >= SESSION_CHECK_SECONDS:
                    checked = time.monotonic()
                    if not await console_sessions.is_active(session, principal.session_id):
                        return
                rows = list(await session.scalars(_query(cursor, 500, dimension, cls, reason)))
            for row in rows:
                change = _out(row)
                data = orjson.dumps(change.model_dump(mode="json", by_alias=True))
                yield b"id: %d\nevent: class_changed\ndata: %s\n\n" % (change.id, data)
                cursor = change.id
                sent += 1
                if max_events is not None and sent >= max_events:
                    return
            if rows:
                idle = 0.0
                continue
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= HEARTBEAT_SECONDS:
                idle = 0.0
                yield b": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
