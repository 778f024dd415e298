"""Customers whose CRM sources disagree on an attribute, read from their facts documents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# A customer's facts document lists its disagreements under "conflicts"
# ({attribute: {source: value}}, see engine/facts.py `attribute_conflicts`).
_COUNTS = text(
    "SELECT a.attribute, count(*) AS customers"
    " FROM customers c CROSS JOIN LATERAL jsonb_object_keys(c.facts->'conflicts') AS a(attribute)"
    " WHERE c.facts ? 'conflicts' AND c.merged_into IS NULL"
    " GROUP BY a.attribute ORDER BY a.attribute"
)
_PAGE = text(
    "SELECT c.id, c.facts->'conflicts' AS conflicts FROM customers c"
    " WHERE c.facts ? 'conflicts' AND c.merged_into IS NULL AND c.id > :after"
    " AND (CAST(:attribute AS text) IS NULL OR c.facts->'conflicts' ? CAST(:attribute AS text))"
    " ORDER BY c.id LIMIT :limit"
)


async def total(session: AsyncSession) -> int:
    """Customers with at least one disagreement."""
    found = await session.scalar(
        text("SELECT count(*) FROM customers WHERE facts ? 'conflicts' AND merged_into IS NULL")
    )
    return int(found or 0)


async def counts(session: AsyncSession) -> dict[str, int]:
    """Customers with a disagreement, per attribute."""
    rows = await session.execute(_COUNTS)
    return {row.attribute: int(row.customers) for row in rows}


async def page(
    session: AsyncSession, *, attribute: str | None, after: str, limit: int
) -> list[tuple[str, dict[str, Any]]]:
    """(customer id, its disagreements) in id order, after `after`."""
    rows = await session.execute(_PAGE, {"after": after, "attribute": attribute, "limit": limit})
    return [(row.id, dict(row.conflicts)) for row in rows]
