"""The active scheme: seeded on first start, compiled once per version, cached."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.db import unit_of_work
from classifier.engine import CompiledScheme, default_scheme_text, parse_scheme
from classifier.locks import Lock
from classifier.models import SchemeVersion
from classifier.schemes import repository

log = logging.getLogger(__name__)
SEED_LOCK = int(Lock.SEED_SCHEME)


async def ensure_active_scheme(
    sessions: async_sessionmaker[AsyncSession], scheme_file: str | None = None
) -> None:
    """Seed version 1 from the shipped default (or `scheme_file`) when no scheme is active."""
    async with unit_of_work(sessions) as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEED_LOCK})
        if await repository.get_active_version(session) is not None:
            return
        source = (
            Path(scheme_file).read_text(encoding="utf-8")  # noqa: ASYNC240 (once, at start-up)
            if scheme_file
            else default_scheme_text()
        )
        compiled = parse_scheme(source)
        version = max(compiled.version, await repository.latest_version(session) + 1)
        await repository.add_active(session, version, compiled.spec.name, source)
        log.info("seeded scheme version %s (%s)", version, compiled.spec.name)


class SchemeCache:
    """Compiles each version once; `active()` re-reads which version is active."""

    def __init__(self) -> None:
        self._compiled: dict[int, CompiledScheme] = {}

    async def active(self, session: AsyncSession) -> CompiledScheme:
        row = await repository.get_active(session)
        if row is None:
            raise RuntimeError("no active scheme; the worker seeds one at start-up")
        cached = self._compiled.get(row.version)
        if cached is None:
            cached = self._compiled[row.version] = compile_stored(row)
        return cached


def compile_stored(row: SchemeVersion) -> CompiledScheme:
    """Compile a stored version; the row's number is authoritative (uploads are renumbered)."""
    compiled = parse_scheme(row.source)
    if compiled.version != row.version:
        compiled.spec = compiled.spec.model_copy(update={"version": row.version})
    return compiled
