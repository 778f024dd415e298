"""The hot read path: customers as JSON straight from one indexed query.

Lookups are what other systems call most, so they skip the ORM and the
response models: one statement on a plain asyncpg pool (no transaction, no
ping, prepared once per connection), JSONB decoded by orjson, the answer
built as plain dicts and encoded by orjson. The shape is `CustomerOut`'s,
which stays the documented response model; the API tests and the schema
fuzzing run hold the two together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from classifier.db import connect_args
from classifier.engine import from_micros
from classifier.engine.features import moved

_COLUMNS = (
    "id, classes, features, motion, overrides, scheme_version, evaluated_at, next_review_at, "
    "updated_at, order_count, gross_revenue, refunded_amount, net_revenue, first_order_at, "
    "last_order_at, call_count, last_call_at"
)
# An id a merge absorbed answers with its survivor (`merged_into`), in the same query.
_FOLLOW = (
    ", ".join(f"c.{column}" for column in _COLUMNS.split(", "))
    + ", a.id AS asked FROM customers a JOIN customers c ON c.id = COALESCE(a.merged_into, a.id)"
)
ONE = f"SELECT {_FOLLOW} WHERE a.id = $1"
MANY = f"SELECT {_FOLLOW} WHERE a.id = ANY($1::text[])"


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_jsonb_text, decoder=orjson.loads, format="text"
    )


def _jsonb_text(value: Any) -> str:
    return orjson.dumps(value).decode()


async def create_pool(dsn: str, size: int, bound_seconds: float) -> asyncpg.Pool:
    """A small pool for the read path; connections are opened lazily.

    Connects and statements give up after `bound_seconds` (the API answers 503).
    """
    # No reset on release: the read path sets no session state, takes no locks
    # and opens no transactions, so the default reset query is a wasted round trip.
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        init=_init,
        reset=_keep,
        **connect_args(bound_seconds),
    )


async def _keep(conn: asyncpg.Connection) -> None:
    return None


def _instant(us: int | None) -> datetime | None:
    return None if us is None else from_micros(us)


def _as_of(explanation: dict[str, Any], now_values: dict[str, Any]) -> dict[str, Any]:
    """An explanation with the time-moving values it shows brought to the read."""
    checks = explanation.get("checks")
    if not checks or not any(c["feature"] in now_values for c in checks):
        return explanation
    out = dict(explanation)
    summary = out.get("summary", "")
    new_checks = []
    for check in checks:
        name = check["feature"]
        if name in now_values:
            summary = summary.replace(
                f"{name} = {check['actual']!r}", f"{name} = {now_values[name]!r}"
            )
            check = {**check, "actual": now_values[name]}
        new_checks.append(check)
    out["checks"] = new_checks
    out["summary"] = summary
    if "features" in out:
        out["features"] = {k: now_values.get(k, v) for k, v in out["features"].items()}
    return out


def _public(explanation: dict[str, Any]) -> dict[str, Any]:
    """The explanation without what the class answer shows beside it (`next`,
    `changes_at`) or keeps for the worker only (`basis`)."""
    if not any(k in explanation for k in ("next", "changes_at", "basis")):
        return explanation
    return {k: v for k, v in explanation.items() if k not in ("next", "changes_at", "basis")}


def customer_document(row: asyncpg.Record, now: int | None) -> dict[str, Any]:
    """The `CustomerOut` shape of one row of `customers`.

    Values that move with time alone (days since, decaying scores) are shown as
    of the read (`values_as_of`), from how they move after the evaluation
    (`customers.motion`); until the next review no class can change, so the
    classes and their explanations still agree. Once that review is due and not
    done, the values stay as evaluated and `review_due` says so.
    """
    evaluated = row["evaluated_at"]
    review = row["next_review_at"]
    due = now is not None and review is not None and review <= from_micros(now)
    now_values: dict[str, Any] = {}
    if now is not None and not due:
        now_values = {name: moved(m, now) for name, m in (row["motion"] or {}).items()}
    classes = {
        dim: {
            "dimension": dim,
            "class": c["class"],
            "since": _instant(c["since"]),
            "scheme_version": c["scheme_version"],
            "rule": c["rule"],
            "explanation": _public(_as_of(c["explanation"], now_values)),
            "next": c["explanation"].get("next"),
            "changes_at": c["explanation"].get("changes_at"),
        }
        for dim, c in row["classes"].items()
    }
    features = row["features"]
    if now_values:
        features = {k: now_values.get(k, v) for k, v in features.items()}
    overrides = {
        dim: {
            "class": o["class"],
            "reason": o["reason"],
            "expires_at": _instant(o.get("expires_at")),
            "set_at": _instant(o["set_at"]),
            "active": o.get("expires_at") is None or now is None or o["expires_at"] > now,
        }
        for dim, o in (row["overrides"] or {}).items()
    }
    return {
        "id": row["id"],
        "merged_into": row["id"] if row["asked"] != row["id"] else None,
        "classes": classes,
        "aggregates": {
            "order_count": row["order_count"],
            "gross_revenue": str(row["gross_revenue"]),
            "refunded_amount": str(row["refunded_amount"]),
            "net_revenue": str(row["net_revenue"]),
            "first_order_at": row["first_order_at"],
            "last_order_at": row["last_order_at"],
            "call_count": row["call_count"],
            "last_call_at": row["last_call_at"],
        },
        "features": features,
        "scheme_version": row["scheme_version"],
        "overrides": overrides,
        "evaluated_at": evaluated,
        "next_review_at": review,
        "updated_at": row["updated_at"],
        "values_as_of": from_micros(now) if now is not None and now_values else evaluated,
        "review_due": due,
    }


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


async def get_one(pool: asyncpg.Pool, customer_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(ONE, customer_id)


async def get_many(pool: asyncpg.Pool, customer_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(await pool.fetch(MANY, list(set(customer_ids))))
