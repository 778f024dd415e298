"""Scheme lifecycle for the API: drafts, preview (no writes), activation (queued as a job)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier import audit, facts_log
from classifier.clock import Clock
from classifier.db import unit_of_work
from classifier.engine import CustomerFacts, PriorClass, evaluate, from_micros, parse_scheme
from classifier.engine.evaluate import overrides_from
from classifier.engine.facts import rebuild
from classifier.engine.scheme import CompiledScheme, SchemeError
from classifier.errors import Conflict, NotFound
from classifier.jobs import repository as jobs_repository
from classifier.jobs import service as jobs
from classifier.locks import Lock
from classifier.models import Customer, Job, SchemeVersion
from classifier.schemes import repository
from classifier.schemes.cutoffs import population_cutoffs, store_cutoffs
from classifier.schemes.service import compile_stored
from eventschemas.problems import FieldError, ValidationFailed

log = logging.getLogger(__name__)
ACTIVATION_LOCK = int(Lock.ACTIVATION)  # serialises activations (was 7_003, the cut-offs')
PREVIEW_PAGE = 1000
SAMPLES = 5


class SchemeSummary(BaseModel):
    version: int
    name: str
    status: str = Field(description="draft, active or retired")
    created_at: datetime
    activated_at: datetime | None


class SchemeOut(SchemeSummary):
    source: str = Field(description="The scheme as uploaded (YAML or JSON).")
    spec: dict[str, Any] = Field(description="The validated scheme.")


class SchemeList(BaseModel):
    schemes: list[SchemeSummary]


class TransitionCount(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_class: str | None = Field(alias="from")
    to_class: str = Field(alias="to")
    count: int
    sample_customer_ids: list[str]


class DimensionImpact(BaseModel):
    changed: int
    unchanged: int
    transitions: list[TransitionCount] = Field(description="from -> to counts, changes only.")


class PreviewOut(BaseModel):
    version: int
    against_version: int | None
    customers: int
    evaluated_at: datetime
    dimensions: dict[str, DimensionImpact]


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    silent: bool = Field(
        default=False,
        description="Re-baseline without emitting change events (history is still kept).",
    )


def summary(row: SchemeVersion) -> SchemeSummary:
    return SchemeSummary(
        version=row.version,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        activated_at=row.activated_at,
    )


async def get_row(session: AsyncSession, version: int) -> SchemeVersion:
    row = await session.get(SchemeVersion, version)
    if row is None:
        raise NotFound(f"no scheme version {version}")
    return row


async def create_draft(session: AsyncSession, source: str, *, actor: str) -> SchemeOut:
    """Validate and store a draft under the next version number (audited: `scheme.upload`)."""
    try:
        compiled = parse_scheme(source)
    except SchemeError as exc:
        errors = []
        for line in exc.errors:
            path, _, message = line.partition(": ")
            errors.append(FieldError(field=path, location=f"body.{path}", message=message))
        raise ValidationFailed(f"{len(errors)} problem(s): {exc.errors[0]}", errors=errors) from exc
    version = await repository.latest_version(session) + 1
    row = SchemeVersion(version=version, name=compiled.spec.name, source=source, status="draft")
    session.add(row)
    details = {"version": version, "name": compiled.spec.name}
    await audit.record(session, actor, "scheme.upload", f"scheme:{version}", details)
    await session.commit()
    await session.refresh(row)
    spec = compiled.spec.model_copy(update={"version": version})
    return SchemeOut(
        **summary(row).model_dump(), source=source, spec=spec.model_dump(mode="json", by_alias=True)
    )


def _evaluate_page(
    scheme: CompiledScheme,
    rows: list[Any],
    facts: dict[str, CustomerFacts],
    now: int,
    cutoffs: dict[str, dict[str, float]],
) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(id, current classes, draft classes) per customer: pure CPU, run in a thread."""
    out = []
    for row in rows:
        previous = {d: PriorClass(c["class"], c["since"]) for d, c in row.classes.items()}
        result = evaluate(
            scheme,
            facts[row.id],
            now,
            previous=previous,
            cutoffs=cutoffs,
            overrides=overrides_from(row.overrides) or None,
        )
        current = {d: c["class"] for d, c in row.classes.items()}
        out.append((row.id, current, {d: r.cls for d, r in result.classes.items()}))
    return out


async def _facts_for(
    session: AsyncSession, scheme: CompiledScheme, rows: Sequence[Any], now: int
) -> dict[str, CustomerFacts]:
    """The customers' facts as the draft needs them: their documents brought up to the
    facts log; a summary of the past built for other points scores, or too recent for
    the draft's longest window, is replaced by a rebuild from the log."""
    facts = {row.id: CustomerFacts.from_doc(row.id, row.facts) for row in rows}
    _, rebuilt = await facts_log.catch_up(
        session, facts, {row.id: row.facts_through for row in rows}
    )
    stale = [
        cid
        for cid, f in facts.items()
        if cid not in rebuilt
        and f.past is not None
        and (f.past.spec != scheme.points_key or f.past.until > now - scheme.horizon)
    ]
    if stale:
        logged = await facts_log.load_facts(session, stale)
        for cid in stale:
            facts[cid] = rebuild(cid, logged.get(cid, ()))
    return facts


async def preview(
    sessions: async_sessionmaker[AsyncSession], version: int, clock: Clock
) -> PreviewOut:
    """Evaluate every customer under `version` now, in a read-only transaction; write nothing."""
    now = clock()
    async with sessions() as session:
        await session.execute(text("SET TRANSACTION READ ONLY"))
        row = await get_row(session, version)
        scheme = compile_stored(row)
        active = await repository.get_active_version(session)
        cutoffs = {d.name: c for d, c in await population_cutoffs(session, scheme)}
        counts: dict[str, Counter[tuple[str | None, str]]] = defaultdict(Counter)
        samples: dict[tuple[str, str | None, str], list[str]] = defaultdict(list)
        total = 0
        after = ""
        while True:
            rows = (
                await session.execute(
                    select(
                        Customer.id,
                        Customer.facts,
                        Customer.facts_through,
                        Customer.classes,
                        Customer.overrides,
                    )
                    .where(Customer.id > after, Customer.merged_into.is_(None))
                    .order_by(Customer.id)
                    .limit(PREVIEW_PAGE)
                )
            ).all()
            if not rows:
                break
            after = rows[-1].id
            total += len(rows)
            facts = await _facts_for(session, scheme, rows, now)
            for cid, current, proposed in await asyncio.to_thread(
                _evaluate_page, scheme, list(rows), facts, now, cutoffs
            ):
                for dim, cls in proposed.items():
                    key = (current.get(dim), cls)
                    counts[dim][key] += 1
                    bucket = samples[(dim, *key)]
                    if key[0] != cls and len(bucket) < SAMPLES:
                        bucket.append(cid)
        await session.rollback()
    dimensions = {}
    for dim in scheme.dimensions:
        pairs = counts.get(dim, Counter())
        changed = sum(n for (old, new), n in pairs.items() if old != new)
        dimensions[dim] = DimensionImpact(
            changed=changed,
            unchanged=sum(pairs.values()) - changed,
            transitions=[
                TransitionCount(
                    from_class=old,
                    to_class=new,
                    count=n,
                    sample_customer_ids=samples[(dim, old, new)],
                )
                for (old, new), n in sorted(pairs.items(), key=lambda kv: -kv[1])
                if old != new
            ],
        )
    return PreviewOut(
        version=version,
        against_version=active,
        customers=total,
        evaluated_at=from_micros(now),
        dimensions=dimensions,
    )


async def start_activation(
    sessions: async_sessionmaker[AsyncSession],
    version: int,
    *,
    silent: bool,
    clock: Clock,
    created_by: str | None,
    actor: str,
) -> Job:
    """Switch the active version and queue the job that re-evaluates everyone (one at a time).

    The switch, the new version's rank cut-offs, the queued job and the audit
    entry (`scheme.activate`, or `scheme.rollback` for a version older than the
    active one) commit together; a worker's job runner does the re-evaluation.
    """
    async with unit_of_work(sessions) as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ACTIVATION_LOCK})
        await jobs.ensure_none_unfinished(session)
        row = await get_row(session, version)
        compiled = compile_stored(row)  # stored drafts were validated; refuse a corrupt one
        previous = await repository.get_active_version(session)
        if previous == version:
            raise Conflict(f"version {version} is already active")
        await repository.retire_active(session)
        row.status, row.activated_at = "active", from_micros(clock())
        await session.flush()
        job = Job(
            kind="activate",
            version=version,
            previous_version=previous,
            silent=silent,
            status="queued",
            total=await jobs_repository.count_customers(session),
            created_by=created_by,
        )
        await jobs.queue(session, job)
        await store_cutoffs(session, compiled, clock())
        rollback = previous is not None and version < previous
        details = {
            "version": version,
            "previous_version": previous,
            "silent": silent,
            "job_id": job.id,
        }
        action = "scheme.rollback" if rollback else "scheme.activate"
        await audit.record(session, actor, action, f"scheme:{version}", details)
        return job
