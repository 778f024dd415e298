"""The audit trail of admin actions: who (an API key id, or `cli`), when, what.

An entry is written in the caller's transaction, so an action and its entry
commit (or roll back) together. Entries never hold personal data: a customer is
named by `customer_ref` (a keyed digest, so an erasure leaves nothing here that
leads to the person), and details carry only dimension and class names, scheme
versions, counts, job and key ids. The table is append-only (a trigger refuses
UPDATE and DELETE; see migration 0011pv).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from classifier.config import ClassifierSettings
from classifier.models import AuditEntry
from eventschemas.events import identity_digest

if TYPE_CHECKING:  # auth records key changes here: no import cycle at run time
    from classifier.auth import Principal

CLI = "cli"
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry to write later, inside a transaction someone else opens."""

    actor: str
    action: str
    target: str | None
    details: dict[str, Any] = field(default_factory=dict)


async def record(
    session: AsyncSession, actor: str, action: str, target: str | None, details: dict[str, Any]
) -> None:
    """Add one entry to the session's transaction (flushed; committed by its owner)."""
    session.add(AuditEntry(actor=actor, action=action, target=target, details=details))
    await session.flush()


async def write(session: AsyncSession, entry: Entry | None) -> None:
    """Record a prepared entry (nothing for None)."""
    if entry is not None:
        await record(session, entry.actor, entry.action, entry.target, entry.details)


def actor_of(principal: Principal) -> str:
    """`api-key:<key id>` for an API caller; `anonymous` when auth is disabled."""
    return ANONYMOUS if principal.key_id == ANONYMOUS else f"api-key:{principal.key_id}"


def customer_ref(
    settings_or_key: ClassifierSettings | bytes | None, customer_id: str
) -> str | None:
    """How the audit trail names a customer: the keyed digest of its id (kind `audit`),
    or None when no identity key is set (then the customer is not named at all)."""
    if isinstance(settings_or_key, ClassifierSettings):
        secret = settings_or_key.identity_key
        key = secret.get_secret_value().encode() if secret is not None else None
    else:
        key = settings_or_key
    if not key:
        return None
    return identity_digest(key, "audit", customer_id)


async def page(
    session: AsyncSession, *, after: int, action: str | None, limit: int
) -> Sequence[AuditEntry]:
    """Entries oldest first with ids above `after`, their action starting with `action`."""
    stmt = select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(limit)
    if action:
        escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(AuditEntry.action.like(f"{escaped}%", escape="\\"))
    return (await session.scalars(stmt)).all()
