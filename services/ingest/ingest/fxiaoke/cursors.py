"""Where the Fxiaoke sync left off, per tenant and object, in PostgreSQL.

A cursor is the (last_modified_time, _id) of the last record whose events the
broker acknowledged. It is saved after each page's events were acknowledged,
in one transaction with the account -> customer links that page made, so a
restart re-reads at most the page it was on (same event ids, dropped by the
classifier) and never skips one. The tables come from the project's Alembic
migrations (the classifier owns the schema); the ingest API itself stays
stateless: only the sync process connects.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


@dataclass(frozen=True, order=True)
class Cursor:
    modified_ms: int
    record_id: str = ""


class CursorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def connect(cls, database_url: str) -> CursorStore:
        return cls(create_async_engine(database_url, pool_size=2, pool_pre_ping=True))

    async def close(self) -> None:
        await self._engine.dispose()

    async def get(self, corp_id: str, object_api_name: str) -> Cursor | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT modified_ms, record_id FROM fxiaoke_sync_cursors "
                        "WHERE corp_id = :corp AND object_api_name = :obj"
                    ),
                    {"corp": corp_id, "obj": object_api_name},
                )
            ).first()
        return Cursor(row.modified_ms, row.record_id) if row else None

    async def active_suppressions(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (kind, suppression digest) pairs are suppressed now (erased)."""
        if not keys:
            return set()
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT s.kind, s.digest FROM suppressions s WHERE s.lifted_at IS NULL "
                    "AND (s.kind, s.digest) IN (SELECT * FROM unnest("
                    "CAST(:kinds AS text[]), CAST(:digests AS text[])))"
                ),
                {"kinds": [k for k, _ in keys], "digests": [d for _, d in keys]},
            )
            return {(r.kind, r.digest) for r in rows}

    async def customers(self, corp_id: str) -> dict[str, str]:
        """Account id -> customer id, as earlier runs resolved them."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT account_id, customer_id FROM fxiaoke_accounts WHERE corp_id = :corp"),
                {"corp": corp_id},
            )
            return {r.account_id: r.customer_id for r in rows}

    async def save(
        self,
        corp_id: str,
        object_api_name: str,
        cursor: Cursor,
        accounts: list[tuple[str, str]],
    ) -> None:
        """Record progress and the page's account links in one transaction."""
        async with self._engine.begin() as conn:
            if accounts:
                await conn.execute(
                    text(
                        "INSERT INTO fxiaoke_accounts (corp_id, account_id, customer_id) "
                        "VALUES (:corp, :account, :customer) ON CONFLICT (corp_id, account_id) "
                        "DO UPDATE SET customer_id = EXCLUDED.customer_id"
                    ),
                    [{"corp": corp_id, "account": a, "customer": c} for a, c in accounts],
                )
            await conn.execute(
                text(
                    "INSERT INTO fxiaoke_sync_cursors "
                    "(corp_id, object_api_name, modified_ms, record_id, updated_at) "
                    "VALUES (:corp, :obj, :ms, :rid, now()) "
                    "ON CONFLICT (corp_id, object_api_name) DO UPDATE SET "
                    "modified_ms = EXCLUDED.modified_ms, record_id = EXCLUDED.record_id, "
                    "updated_at = now() "
                    # A backfill re-reading older records never moves a cursor back.
                    "WHERE (fxiaoke_sync_cursors.modified_ms, "
                    'fxiaoke_sync_cursors.record_id COLLATE "C") '
                    '< (EXCLUDED.modified_ms, EXCLUDED.record_id COLLATE "C")'
                ),
                {
                    "corp": corp_id,
                    "obj": object_api_name,
                    "ms": cursor.modified_ms,
                    "rid": cursor.record_id,
                },
            )
