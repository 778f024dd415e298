"""The hot read path: customers as JSON straight from one indexed query.

Lookups are what other systems call most, so they skip the ORM and the
response models: one statement on a plain asyncpg pool (no transaction, no
ping, prepared once per connection) reads the customer's document as the
worker rendered it (processing/documents.py), and the answer is those bytes
with the few values that move with the read spliced in, after a small head
(id, aggregates, instants). The shape is `CustomerOut`'s, which stays the
documented response model; the API tests and the schema fuzzing run hold the
two together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from classifier.db import connect_args
from classifier.engine import from_micros
from classifier.processing import documents

log = logging.getLogger(__name__)

_AGGREGATES = (
    "order_count",
    "gross_revenue",
    "refunded_amount",
    "net_revenue",
    "first_order_at",
    "last_order_at",
    "call_count",
    "last_call_at",
)
# The rendered document (processing/documents.py) and what a read adds to it; the
# columns it is rendered from only for a customer whose document was emptied
# (the trigger empties both document columns; the slots are the cheaper test).
_COLUMNS = (
    "id, merged_into, document, document_slots, motion, scheme_version, evaluated_at, "
    "next_review_at, updated_at, "
    + ", ".join(_AGGREGATES)
    + ", "
    + ", ".join(
        f"CASE WHEN document_slots IS NULL THEN {column} END AS {column}"
        for column in ("classes", "features", "overrides")
    )
)
ONE = f"SELECT {_COLUMNS} FROM customers WHERE id = $1"
MANY = f"SELECT {_COLUMNS} FROM customers WHERE id = ANY($1::text[])"


async def _init(conn: asyncpg.Connection) -> None:
    for kind in ("jsonb", "json"):  # customers.classes is json (migration 0016)
        await conn.set_type_codec(
            kind, schema="pg_catalog", encoder=_jsonb_text, decoder=orjson.loads, format="text"
        )
    await _prepare(conn)


async def _prepare(conn: asyncpg.Connection) -> None:
    """Prepare the read path's statements on a connection as it opens. Each is run
    once for an id no customer has; asyncpg keeps the prepared statement, so no
    request waits for one to be planned."""
    await conn.fetch(MANY, [])
    await conn.fetch(HISTORY, "", 1, None)
    await conn.fetch(CURRENT, "", 1)
    await conn.fetch(AS_OF, "", 1, from_micros(0))


async def open_connections(pool: asyncpg.Pool) -> int:
    """Open every connection of the pool now (each prepared by `_init`), rather than
    during the first burst of requests; returns how many are open. A database that
    is away is left to the requests: they answer 503 until it is back."""
    got = await asyncio.gather(
        *(pool.acquire() for _ in range(pool.get_max_size())), return_exceptions=True
    )
    held = [conn for conn in got if not isinstance(conn, BaseException)]
    for conn in held:
        await pool.release(conn)
    if len(held) < len(got):  # the pool opens the others lazily, as requests come
        failed = next(c for c in got if isinstance(c, BaseException))
        log.warning(
            "read pool: %d of %d connections not opened ahead (%s)",
            len(got) - len(held),
            len(got),
            type(failed).__name__,
        )
    return len(held)


def _jsonb_text(value: Any) -> str:
    return orjson.dumps(value).decode()


async def create_pool(dsn: str, size: int, bound_seconds: float) -> asyncpg.Pool:
    """A small pool for the read path; connections are opened lazily (the API opens
    them ahead at startup: `open_connections`).

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


def customer_document(row: asyncpg.Record, now: int | None, asked: str | None = None) -> bytes:
    """The `CustomerOut` JSON of one row of `customers`, as of `now` (`asked`: the id
    asked for, when a merge absorbed it into this customer)."""
    return b"".join(customer_parts(row, now, asked))


def customer_parts(
    row: asyncpg.Record, now: int | None, asked: str | None = None
) -> list[bytes | memoryview]:
    """`customer_document` as pieces to join (a bulk answer joins all its
    customers' pieces at once, copying each document once).

    The rendered document (classes, explanations, features, overrides) is sent
    as stored, with the values that move with time alone (days since, decaying
    scores) shown as of the read (`values_as_of`), from how they move after the
    evaluation (`customers.motion`); until the next review no class can change,
    so the classes and their explanations still agree. Once that review is due
    and not done, the values stay as evaluated and `review_due` says so.
    """
    body, slots = row["document"], row["document_slots"]
    motion = row["motion"] or {}
    evaluated = row["evaluated_at"]
    if body is None:  # emptied by a write that did not render it (a merge, a flagging)
        body, slots = documents.render(
            classes=row["classes"],
            features=row["features"],
            motion=motion,
            overrides=row["overrides"] or {},
            scheme_version=row["scheme_version"],
            evaluated_at=evaluated,
        )
    review = row["next_review_at"]
    due = now is not None and review is not None and review <= from_micros(now)
    moving = now is not None and not due and bool(motion)
    head = dumps(
        {
            "id": row["id"],
            "merged_into": row["id"] if asked is not None and asked != row["id"] else None,
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
            "next_review_at": review,
            "updated_at": row["updated_at"],
            "values_as_of": from_micros(now) if moving and now is not None else evaluated,
            "review_due": due,
        }
    )
    # Two JSON objects made one: the head's members, then the document's.
    parts = documents.present_parts(body, slots, motion, now, due, 1)
    parts.insert(0, head[:-1] + b",")
    return parts


def lookup_body(found: Sequence[Sequence[bytes | memoryview]], unknown: Sequence[str]) -> bytes:
    """`LookupOut` from customers' pieces (`customer_parts`)."""
    pieces: list[bytes | memoryview] = [b'{"customers":[']
    for index, parts in enumerate(found):
        if index:
            pieces.append(b",")
        pieces += parts
    pieces.append(b'],"unknown":' + dumps(list(unknown)) + b"}")
    return b"".join(pieces)


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


async def get_many(pool: asyncpg.Pool, customer_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    """The rows of the customers asked for, by the id asked (a survivor's for an id a
    merge absorbed): one query, and one more only when some were absorbed."""
    rows = {row["id"]: row for row in await pool.fetch(MANY, list(set(customer_ids)))}
    absorbed = {asked: row["merged_into"] for asked, row in rows.items() if row["merged_into"]}
    if absorbed:
        survivors = {r["id"]: r for r in await pool.fetch(MANY, list(set(absorbed.values())))}
        for asked, survivor in absorbed.items():
            if survivor in survivors:
                rows[asked] = survivors[survivor]
            else:
                del rows[asked]
    return rows


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Reader:
    """Customers read on the read pool; single reads that arrive together share a query.

    At most `in_flight` queries run at once; requests arriving meanwhile wait and
    go together in the next one (`= ANY`), so under load one round trip serves
    many lookups and, with nothing else running, a lookup goes at once alone.
    """

    def __init__(self, pool: asyncpg.Pool, in_flight: int) -> None:
        self.pool = pool
        self._in_flight = max(1, in_flight)
        self._running: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, list[asyncio.Future[asyncpg.Record | None]]] = {}

    async def one(self, customer_id: str) -> asyncpg.Record | None:
        """The customer's row; for an id a merge absorbed, its survivor's."""
        if "\x00" in customer_id or (not customer_id.isascii() and not _encodable(customer_id)):
            # PostgreSQL refuses it: its error is this request's alone, not its batch's.
            return (await get_many(self.pool, [customer_id])).get(customer_id)
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(customer_id, []).append(future)
        if len(self._running) < self._in_flight:
            task = asyncio.create_task(self._drain())  # starts next turn: more may join
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await future

    async def many(self, customer_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
        return await get_many(self.pool, customer_ids)

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                rows = await get_many(self.pool, list(batch))
            except Exception as exc:  # each waiter answers it (a 503, a 400)
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for customer_id, futures in batch.items():
                row = rows.get(customer_id)
                for future in futures:
                    if not future.done():
                        future.set_result(row)


# A customer's periods (`HistoryOut`) and its classes at an instant (`ClassesAsOfOut`),
# in one statement each: a first row for the id asked (`known`: is it a customer),
# joined to the periods asked for (none: one row of NULLs).
_PERIODS = """
SELECT c.id IS NOT NULL AS known, h.dimension, h.class, h.valid_from, h.valid_to,
       h.reason, h.change_id, h.scheme_version
FROM (SELECT $1::text AS asked) a
LEFT JOIN customers c ON c.id = a.asked
LEFT JOIN LATERAL (
    SELECT * FROM class_history h
    WHERE h.customer_id = c.id AND {where}
    ORDER BY {order}
    LIMIT $2
) h ON true
"""
HISTORY = _PERIODS.format(
    where="($3::text IS NULL OR h.dimension = $3)", order="h.dimension, h.valid_from, h.id"
)
CURRENT = _PERIODS.format(where="h.valid_to IS NULL", order="h.dimension")
AS_OF = _PERIODS.format(
    where="h.valid_from <= $3 AND (h.valid_to IS NULL OR h.valid_to > $3)", order="h.dimension"
)


async def history(
    pool: asyncpg.Pool, customer_id: str, dimension: str | None, limit: int
) -> bytes | None:
    """`HistoryOut` as JSON bytes: every period the customer held a class, per
    dimension, oldest first; None when there is no such customer."""
    rows = await pool.fetch(HISTORY, customer_id, limit, dimension or None)  # "": every one
    if not rows or not rows[0]["known"]:
        return None
    periods = [
        {
            "dimension": r["dimension"],
            "class": r["class"],
            "valid_from": r["valid_from"],
            "valid_to": r["valid_to"],
            "reason": r["reason"],
            "change_id": r["change_id"],
            "scheme_version": r["scheme_version"],
        }
        for r in rows
        if r["dimension"] is not None
    ]
    return dumps({"customer_id": customer_id, "periods": periods})


async def classes_as_of(
    pool: asyncpg.Pool, customer_id: str, at: datetime | None, as_of: datetime
) -> bytes | None:
    """`ClassesAsOfOut` as JSON bytes: the classes held at `at` (None: the open
    periods, the current classes), answered as of `as_of`; None when there is no
    such customer."""
    if at is None:
        rows = await pool.fetch(CURRENT, customer_id, _ALL)
    else:
        rows = await pool.fetch(AS_OF, customer_id, _ALL, at)
    if not rows or not rows[0]["known"]:
        return None
    classes = {
        r["dimension"]: {
            "class": r["class"],
            "since": r["valid_from"],
            "reason": r["reason"],
            "scheme_version": r["scheme_version"],
        }
        for r in rows
        if r["dimension"] is not None
    }
    return dumps({"customer_id": customer_id, "as_of": as_of, "classes": classes})


_ALL = 2**31 - 1  # no limit: a customer holds one period per dimension at an instant
