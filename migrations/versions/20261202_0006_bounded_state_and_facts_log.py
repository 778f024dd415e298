"""the facts log (customer_facts), filled from the stored customer documents

Revision ID: 0006st
Revises: 0005ik
Create Date: 2026-12-02 00:00:00

Customers' documents stay as they are (the worker reads version 1 documents
and writes them back bounded, see engine/facts.py); every fact they hold is
written to the new append-only log, so a later rebuild starts from the same
facts. What a document no longer knows (the order of past relationship
changes, the instant each deal stage was first seen) is written as the
document has it: the folded result is the same.
"""

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006st"
down_revision: str | None = "0005ik"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000
LINK_TOUCH = re.compile(r"^(?P<link>.+):(?P<change>added|edited)@(?P<at>-?\d+)$")


def upgrade() -> None:
    op.create_table(
        "customer_facts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fact_key", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_facts")),
    )
    op.create_index(
        "ix_customer_facts_customer_at", "customer_facts", ["customer_id", "at"], unique=False
    )
    # The inbox is pruned by age (consumer/inbox.py).
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"], unique=False)
    bind = op.get_bind()
    after = ""
    while True:
        rows = bind.execute(
            sa.text("SELECT id, facts FROM customers WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": CHUNK},
        ).all()
        if not rows:
            break
        facts = [f for cid, doc in rows for f in _facts(cid, doc)]
        if facts:
            bind.execute(
                sa.text(
                    "INSERT INTO customer_facts (customer_id, kind, fact_key, at, seen, body) "
                    "VALUES (:c, :k, :f, to_timestamp(:a / 1e6), to_timestamp(:s / 1e6), "
                    "CAST(:b AS jsonb))"
                ),
                facts,
            )
        after = rows[-1][0]


def _facts(cid: str, doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The facts a version 1 document holds, in an order that folds back to it."""
    seen = doc.get("first_seen_at") or 0

    def fact(kind: str, key: str, at: int, body: dict[str, Any]) -> dict[str, Any]:
        return {"c": cid, "k": kind, "f": key, "a": at, "s": min(seen, at), "b": json.dumps(body)}

    for oid, (placed, amount, status, cancelled, refunds, rev) in doc.get("orders", {}).items():
        if placed is not None:
            yield fact("order", oid, placed, {"a": amount, "s": status, "r": rev})
        for rid, (at, refunded) in refunds.items():
            yield fact("refund", rid, at, {"o": oid, "a": refunded})
        if cancelled and status != "cancelled":
            yield fact("cancel", oid, seen, {})
    for call_id, (started, outcome, intent, duration, direction) in doc.get("calls", {}).items():
        body = {"o": outcome, "i": intent, "d": duration, "w": direction}
        yield fact("call", call_id, started, body)
    if doc.get("attributes") or doc.get("tags"):
        body = {"attrs": doc.get("attributes") or {}, "tags": doc.get("tags") or None}
        yield fact("contact", "", doc.get("attributes_at") or 0, body)
    stage, stage_at, stages_seen = doc.get("deal") or [None, None, []]
    for s in [*stages_seen, *([stage] if stage is not None else [])]:
        yield fact("deal", "", stage_at or seen, {"stage": s})
    links = doc.get("links", {})
    replayed: set[str] = set()
    for tid, (at, kind) in doc.get("touches", {}).items():
        m = LINK_TOUCH.match(tid)
        if m and m["link"] in links and int(m["at"]) == at:
            channel, owner = m["link"].split(":", 1)
            body = {"ch": channel, "own": owner, "chg": m["change"]}
            yield fact("relationship", "", at, body)
            replayed.add(f"{m['link']}@{at}")
        else:
            yield fact("touch", tid, at, {"kind": kind})
    for link, (state, at) in links.items():
        if state == "open" and f"{link}@{at}" in replayed:
            continue
        channel, owner = link.split(":", 1)
        change = "added" if state == "open" else state
        yield fact("relationship", "", at, {"ch": channel, "own": owner, "chg": change})


def downgrade() -> None:
    op.drop_index("ix_inbox_processed_at", table_name="inbox")
    op.drop_index("ix_customer_facts_customer_at", table_name="customer_facts")
    op.drop_table("customer_facts")
