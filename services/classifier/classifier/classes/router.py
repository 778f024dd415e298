"""Class membership, counts and flows: answered from indexed tables."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from classifier.auth import ReadAccess
from classifier.classes import repository
from classifier.db import SessionDep
from classifier.errors import BadRequest
from classifier.params import Instant
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1/classes", tags=["classes"], dependencies=[ReadAccess])
Name = Annotated[str, Path(min_length=1, max_length=64)]
MAX_FILTERS = 8


class Member(BaseModel):
    customer_id: str
    since: datetime


class MembersOut(BaseModel):
    dimension: str
    cls: str = Field(alias="class")
    filters: dict[str, str]
    members: list[Member]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")

    model_config = ConfigDict(populate_by_name=True)


class ClassCount(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    cls: str = Field(alias="class")
    count: int


class CountsOut(BaseModel):
    dimensions: dict[str, list[ClassCount]]


class Flow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_class: str | None = Field(alias="from", description="null: the customer's first class.")
    to_class: str = Field(alias="to")
    count: int


class FlowsOut(BaseModel):
    dimension: str
    since: datetime
    until: datetime
    flows: list[Flow]


class DayCounts(BaseModel):
    at: datetime = Field(description="The instant the counts hold at (a day's end, or now).")
    counts: dict[str, int] = Field(description="Customers per class at that instant.")


class DailyOut(BaseModel):
    dimension: str
    days: list[DayCounts]


def _encode(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("cursor is not one this API returned") from exc


def _filters(where: list[str]) -> dict[str, str]:
    filters: dict[str, str] = {}
    if len(where) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} filters")
    for item in where:
        dim, sep, cls = item.partition(":")
        if not sep or not dim or not cls:
            raise BadRequest(f"filter {item!r} is not dimension:class")
        filters[dim] = cls
    return filters


@router.get(
    "/{dimension}/{cls}/members", responses={400: {"model": Problem, "description": "Bad filter."}}
)
async def members(
    dimension: Name,
    cls: Name,
    session: SessionDep,
    where: Annotated[
        list[str],
        Query(
            description="More dimension:class conditions, all must hold (e.g. abc_tier:A).",
            max_length=MAX_FILTERS,
        ),
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembersOut:
    """Customers holding a class, ordered by id, keyset-paginated (stable while classes
    change: a page never repeats or skips customers that did not move)."""
    filters = _filters(where)
    after = _decode(cursor) if cursor else None
    rows = await repository.members(session, dimension, cls, filters, after, limit + 1)
    page = rows[:limit]
    return MembersOut(
        dimension=dimension,
        cls=cls,
        filters=filters,
        members=[Member(customer_id=r.customer_id, since=r.since) for r in page],
        next_cursor=_encode(page[-1].customer_id) if len(rows) > limit else None,
    )


@router.get("/counts")
async def counts(
    session: SessionDep,
    dimension: Annotated[str | None, Query(max_length=64)] = None,
) -> CountsOut:
    """How many customers hold each class, per dimension."""
    result: dict[str, list[ClassCount]] = {}
    for dim, cls, n in await repository.counts(session, dimension):
        result.setdefault(dim, []).append(ClassCount(cls=cls, count=n))
    return CountsOut(dimensions=result)


@router.get("/{dimension}/flows", responses={400: {"model": Problem}})
async def flows(
    dimension: Name,
    session: SessionDep,
    since: Annotated[Instant, Query(description="Start of the period (inclusive).")],
    until: Annotated[Instant, Query(description="End of the period (exclusive).")],
) -> FlowsOut:
    """How many customers moved from one class to another in a period (announced changes)."""
    if until < since:
        raise BadRequest("until lies before since")
    rows = await repository.flows(session, dimension, since, until)
    return FlowsOut(
        dimension=dimension,
        since=since,
        until=until,
        flows=[Flow(from_class=o, to_class=n, count=c) for o, n, c in rows],
    )


@router.get("/{dimension}/daily")
async def daily(
    dimension: Name,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=90, description="How many days back.")] = 30,
) -> DailyOut:
    """How many customers held each class at the end of each of the last `days` days (the
    last point is now), from the class history: the console's trend chart."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    instants = [midnight - timedelta(days=n) for n in range(days - 1, 0, -1)] + [now]
    found: dict[datetime, dict[str, int]] = {at: {} for at in instants}
    for at, cls, n in await repository.daily_counts(session, dimension, instants):
        found.setdefault(at, {})[cls] = n
    return DailyOut(
        dimension=dimension, days=[DayCounts(at=at, counts=found.get(at, {})) for at in instants]
    )
