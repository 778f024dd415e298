"""One customer, however they reach us: identity resolution and merges in the
worker's transaction (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.processing.batch import BatchProcessor, Delivery, IdentityOptions
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import (
    ActivityEvent,
    CallLogged,
    CallOutcome,
    CrmContactMerged,
    CrmContactUpdated,
    Identity,
    OrderPlaced,
    identity_digest,
)

KEY = b"test-identity-key-0123456789abcdef"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def email(address: str) -> Identity:
    return Identity(email_hash=identity_digest(KEY, "email", address))


def phone(number: str) -> Identity:
    return Identity(phone_hash=identity_digest(KEY, "phone", number))


def derived(identity: Identity) -> str:
    digest = identity.email_hash or identity.phone_hash
    assert digest is not None
    return f"id-{'e' if identity.email_hash else 'p'}-{digest[:24]}"


def deliver(*events: ActivityEvent) -> list[Delivery]:
    return [Delivery(e.to_envelope("identity-test"), e) for e in events]


def order(cid: str, n: int, identity: Identity | None = None, amount: int = 100) -> OrderPlaced:
    return OrderPlaced(
        customer_id=cid,
        order_id=f"{cid}-o{n}",
        amount=Decimal(amount),
        currency="USD",
        amount_base=Decimal(amount),
        base_currency="USD",
        placed_at=T0 + timedelta(minutes=n),
        identity=identity,
    )


def call(cid: str, n: int, identity: Identity | None, outcome: CallOutcome) -> CallLogged:
    return CallLogged(
        customer_id=cid,
        call_id=f"{cid}-c{n}",
        started_at=T0 + timedelta(hours=1, minutes=n),
        outcome=outcome,
        identity=identity,
    )


def contact(cid: str, identity: Identity) -> CrmContactUpdated:
    return CrmContactUpdated(
        customer_id=cid,
        crm_record_id=cid,
        updated_at=T0,
        attributes={"industry": "retail"},
        identity=identity,
    )


async def row(sessions: async_sessionmaker[AsyncSession], cid: str) -> Any:
    async with sessions() as session:
        return (
            await session.execute(
                text(
                    "SELECT id, merged_into, order_count, call_count, classes "
                    "FROM customers WHERE id = :c"
                ),
                {"c": cid},
            )
        ).one_or_none()


def stage(customer: Any) -> str | None:
    entry = customer.classes.get("lifecycle_stage")
    return entry["class"] if entry else None


async def test_a_call_with_only_the_email_joins_the_known_customer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    known, address = f"crm-{tag}", f"zhang.{tag}@example.cn"
    await worker.process(deliver(contact(known, email(address))))
    assert stage(await row(sessions, known)) == "potential"

    # The call names no customer id: ingest derived one from the e-mail.
    alone = email(address)
    await worker.process(deliver(call(derived(alone), 1, alone, CallOutcome.INTERESTED)))

    customer = await row(sessions, known)
    assert customer.call_count == 1
    assert stage(customer) == "initial_intent"
    alias = await row(sessions, derived(alone))
    assert alias.merged_into == known
    assert alias.call_count == 0
    async with sessions() as session:
        merges = await session.scalar(
            text("SELECT count(*) FROM customer_merges WHERE survivor_id = :c"), {"c": known}
        )
    assert merges == 0  # the derived id was never a customer of its own: nothing merged


async def test_an_event_tying_two_known_customers_merges_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    first, second = f"a-{tag}", f"b-{tag}"
    address, number = f"li.{tag}@example.cn", f"+86138{tag_digits(tag)}8000"
    await worker.process(deliver(order(first, 1, email(address)), order(first, 2)))
    await worker.process(deliver(*(order(second, n, phone(number)) for n in range(3, 6))))
    # The same phone and the first customer's e-mail, on an order of the second.
    both = Identity(
        email_hash=identity_digest(KEY, "email", address),
        phone_hash=identity_digest(KEY, "phone", number),
    )
    await worker.process(deliver(order(second, 6, both)))

    survivor, absorbed = await row(sessions, first), await row(sessions, second)
    assert survivor.order_count == 6  # both histories
    assert absorbed.merged_into == first
    assert absorbed.classes == {}
    async with sessions() as session:
        audit = (
            await session.execute(
                text("SELECT absorbed_id, cause FROM customer_merges WHERE survivor_id = :c"),
                {"c": first},
            )
        ).all()
        record = (
            await session.execute(
                text(
                    "SELECT rule, reason FROM class_changes "
                    "WHERE customer_id = :c AND dimension = '@merged'"
                ),
                {"c": first},
            )
        ).all()
        members = await session.scalar(
            text("SELECT count(*) FROM customer_classes WHERE customer_id = :c"), {"c": second}
        )
        moved = await session.scalar(
            text("SELECT count(*) FROM customer_facts WHERE customer_id = :c AND origin_id = :o"),
            {"c": first, "o": second},
        )
        history = await session.scalar(
            text("SELECT count(*) FROM class_history WHERE customer_id = :c"), {"c": second}
        )
    assert [tuple(r) for r in audit] == [(second, "identity")]
    assert [tuple(r) for r in record] == [(second, "merge")]
    assert members == 0  # no longer listed in any class
    assert moved == 4  # the absorbed customer's facts, origin kept for an unmerge
    assert history > 0  # its class history stays readable

    # Later events of the absorbed id land on the survivor.
    await worker.process(deliver(order(second, 7)))
    assert (await row(sessions, first)).order_count == 7


async def test_a_crm_merge_keeps_the_named_survivor(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    first, second = f"a-{tag}", f"z-{tag}"
    await worker.process(deliver(order(first, 1), order(second, 2), order(second, 3)))
    merged = CrmContactMerged(
        customer_id=second, absorbed_ids=[first], merged_at=T0 + timedelta(hours=3)
    )
    await worker.process(deliver(merged))
    assert (await row(sessions, second)).order_count == 3
    assert (await row(sessions, first)).merged_into == second


async def test_an_absorbed_customer_flagged_for_review_gets_no_classes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A cut-off computation that flagged a customer while a merge absorbed it must not
    give the absorbed id classes again (the review skips it)."""
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    tag = uuid.uuid4().hex[:8]
    first, second = f"a-{tag}", f"z-{tag}"
    await worker.process(deliver(order(first, 1), order(second, 2)))
    merged = CrmContactMerged(
        customer_id=second, absorbed_ids=[first], merged_at=T0 + timedelta(hours=3)
    )
    await worker.process(deliver(merged))
    async with sessions() as session, session.begin():  # as the flagging race left it
        await session.execute(
            text("UPDATE customers SET next_review_at = now() - interval '1 minute' WHERE id = :c"),
            {"c": first},
        )
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    await worker.review_due(now, 100)
    absorbed = await row(sessions, first)
    assert absorbed.merged_into == second
    assert absorbed.classes == {}
    async with sessions() as session:
        held = await session.scalar(
            text("SELECT count(*) FROM customer_classes WHERE customer_id = :c"), {"c": first}
        )
    assert held == 0


async def test_a_shared_number_does_not_glue_customers_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_active_scheme(sessions)
    worker = BatchProcessor(
        sessions, SchemeCache(), identity=IdentityOptions(KEY, ambiguous_after=2)
    )
    tag = uuid.uuid4().hex[:8]
    switchboard = phone(f"+86215555{tag_digits(tag)}")
    ids = [f"c{n}-{tag}" for n in range(5)]
    for n, cid in enumerate(ids):
        await worker.process(deliver(order(cid, n, switchboard)))
    merged_into = [(await row(sessions, cid)).merged_into for cid in ids]
    # The first two merged before the number was seen with a third customer.
    assert merged_into == [None, ids[0], None, None, None]
    async with sessions() as session:
        link = (
            await session.execute(
                text(
                    "SELECT ambiguous, cardinality(subjects) FROM identity_links WHERE digest = :d"
                ),
                {"d": switchboard.phone_hash},
            )
        ).one()
    assert tuple(link) == (True, 3)


def _story(tag: str) -> list[ActivityEvent]:
    """Events of a few people arriving under several ids, tied by e-mails and phones."""
    e = [email(f"p{n}.{tag}@example.cn") for n in range(3)]
    p = [phone(f"+86138000{tag_digits(tag)}{n}") for n in range(3)]
    both = Identity(email_hash=e[1].email_hash, phone_hash=p[2].phone_hash)
    return [
        order(f"shop-a-{tag}", 1, e[0]),
        order(f"shop-a-{tag}", 2),
        call(f"tel-a-{tag}", 1, e[0], CallOutcome.INTERESTED),
        order(f"shop-b-{tag}", 3, e[1]),
        call(f"tel-c-{tag}", 2, p[2], CallOutcome.DEAL_CLOSED),
        order(f"shop-c-{tag}", 4, both),
        contact(f"crm-d-{tag}", p[1]),
        order(f"shop-d-{tag}", 5, p[1], amount=5000),
        order(f"shop-d-{tag}", 6, amount=7000),
        call(f"tel-d-{tag}", 3, p[1], CallOutcome.CALLBACK_REQUESTED),
    ]


def tag_digits(tag: str) -> str:
    return str(int(tag, 16) % 10_000).zfill(4)


async def _outcome(sessions: async_sessionmaker[AsyncSession], tag: str) -> dict[str, Any]:
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT id, merged_into, order_count, call_count, classes FROM customers "
                "WHERE id LIKE :t ORDER BY id"
            ),
            {"t": f"%{tag}"},
        )
        return {
            r.id: (
                r.merged_into,
                r.order_count,
                r.call_count,
                {d: c["class"] for d, c in r.classes.items()},
            )
            for r in rows
        }


def _same(outcome: dict[str, Any], tag: str) -> dict[str, Any]:
    """The outcome with the run's tag taken out of every id."""
    return {
        cid.replace(tag, "T"): (None if merged is None else merged.replace(tag, "T"), *rest)
        for cid, (merged, *rest) in outcome.items()
    }


async def test_concurrent_workers_end_as_one_worker_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The same events, split across two workers in shuffled batches, end in the
    same graph and classes as one worker applying them in order."""
    await ensure_active_scheme(sessions)
    in_order = uuid.uuid4().hex[:6]
    one = BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY))
    for event in _story(in_order):
        await one.process(deliver(event))
    expected = await _outcome(sessions, in_order)
    assert sum(1 for merged, *_ in expected.values() if merged is None) == 3

    for seed in range(4):
        tag = uuid.uuid4().hex[:6]
        events = _story(tag)
        random.Random(seed).shuffle(events)
        halves = [events[0::2], events[1::2]]
        workers = [
            BatchProcessor(sessions, SchemeCache(), identity=IdentityOptions(KEY)) for _ in halves
        ]

        async def run(worker: BatchProcessor, mine: list[ActivityEvent]) -> None:
            for start in range(0, len(mine), 2):
                await worker.process(deliver(*mine[start : start + 2]))

        await asyncio.gather(*(run(w, h) for w, h in zip(workers, halves, strict=True)))
        got = await _outcome(sessions, tag)
        assert _same(got, tag) == _same(expected, in_order), seed
