"""On PostgreSQL: random histories delivered through the worker's batch path in
random order, in random batches, with redeliveries, leave a customer whose
stored (bounded) state and classes equal a rebuild from the facts log."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier import facts_log
from classifier.db import unit_of_work
from classifier.engine import PriorClass, evaluate
from classifier.engine.conditions import EvalContext
from classifier.engine.facts import rebuild, to_micros
from classifier.processing import repository
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.processing.cache import StateCache
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import (
    ActivityEvent,
    CallLogged,
    CallOutcome,
    CrmContactUpdated,
    CrmDealStageChanged,
    OrderCancelled,
    OrderPlaced,
    OrderRefunded,
)

START = datetime(2020, 1, 1, tzinfo=UTC)
days = st.integers(0, 6 * 365)  # longer than the default scheme's 730-day horizon
money = {"currency": "USD", "base_currency": "USD"}


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[ActivityEvent], list[list[int]]]:
    # Event ids derive from order/call ids: a fresh customer and id prefix per
    # example (also when hypothesis replays one) keeps examples apart.
    cid = f"prop-{uuid.uuid4().hex[:12]}"
    o = f"{cid}-o"
    events: list[ActivityEvent] = []
    for i in range(draw(st.integers(1, 10))):
        placed = START + timedelta(days=draw(days))
        amount = Decimal(draw(st.integers(1, 20_000)))
        for revision in range(draw(st.integers(1, 2))):
            events.append(
                OrderPlaced(
                    customer_id=cid,
                    order_id=f"{o}{i}",
                    amount=amount + revision,
                    amount_base=amount + revision,
                    placed_at=placed,
                    revision=revision,
                    **money,
                )
            )
        if draw(st.booleans()):
            events.append(
                OrderRefunded(
                    customer_id=cid,
                    refund_id=f"{o}r{i}",
                    order_id=f"{o}{i}",
                    amount=(amount / 3).quantize(Decimal("0.01")),
                    amount_base=(amount / 3).quantize(Decimal("0.01")),
                    refunded_at=placed + timedelta(days=draw(st.integers(-5, 200))),
                    **money,
                )
            )
        if draw(st.integers(0, 4)) == 0:
            events.append(
                OrderCancelled(
                    customer_id=cid,
                    order_id=f"{o}{i}",
                    cancelled_at=placed + timedelta(days=1),
                )
            )
    for i in range(draw(st.integers(0, 5))):
        events.append(
            CallLogged(
                customer_id=cid,
                call_id=f"{o}c{i}",
                started_at=START + timedelta(days=draw(days)),
                duration_seconds=60,
                outcome=draw(st.sampled_from(list(CallOutcome))),
            )
        )
    for _ in range(draw(st.integers(0, 2))):
        events.append(
            CrmContactUpdated(
                customer_id=cid,
                crm_record_id=f"{o}crm",
                updated_at=START + timedelta(days=draw(days)),
                attributes={"industry": draw(st.sampled_from(["retail", "software"]))},
                tags=draw(st.sampled_from([None, ["vip"]])),
            )
        )
    for stage in draw(st.lists(st.sampled_from(["qualification", "proposal"]), max_size=2)):
        events.append(
            CrmDealStageChanged(
                customer_id=cid,
                deal_id=f"{o}d",
                stage=stage,
                changed_at=START + timedelta(days=draw(days)),
            )
        )
    order = draw(st.permutations(range(len(events))))
    # Deliveries: indices into `events` (a repeated index is a redelivery of the
    # same envelope), cut into batches.
    deliveries = list(order) + draw(st.lists(st.sampled_from(order), max_size=3))
    cuts = sorted(draw(st.sets(st.integers(1, max(len(deliveries) - 1, 1)), max_size=4)))
    batches = [deliveries[a:b] for a, b in zip([0, *cuts], [*cuts, len(deliveries)], strict=False)]
    return events, [b for b in batches if b]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=histories())
@pytest.mark.parametrize("cached", [True, False], ids=["states-in-memory", "states-read"])
async def test_stored_state_equals_a_rebuild_from_the_facts_log(
    sessions: async_sessionmaker[AsyncSession],
    case: tuple[list[ActivityEvent], list[list[int]]],
    cached: bool,
) -> None:
    events, batches = case
    await ensure_active_scheme(sessions)
    schemes = SchemeCache()
    # The worker's processor keeps states in memory between batches; without it
    # every batch reads documents (checkpoints) and the facts logged since.
    processor = BatchProcessor(sessions, schemes, StateCache(100) if cached else None)
    envelopes = [e.to_envelope("prop") for e in events]
    for batch in batches:
        await processor.process([Delivery(envelopes[i], events[i]) for i in batch])

    cid = events[0].customer_id
    async with unit_of_work(sessions) as session:
        scheme = await schemes.active(session)
        cutoffs = await repository.load_cutoffs(session, scheme.version)
        state = (await repository.load_states(session, [cid]))[cid]
        logged = (await facts_log.load_facts(session, [cid]))[cid]
    assert len(logged) == len({e.id for e in envelopes})  # redeliveries are not logged twice
    full = rebuild(cid, logged)
    at = state.evaluated_at
    assert at == max(to_micros(e.occurred_at()) for e in events)
    stored_ctx = EvalContext(state.facts, at, scheme.features)
    full_ctx = EvalContext(full, at, scheme.features)
    for name in scheme.features:
        assert same(stored_ctx.value(name), full_ctx.value(name)), name
    priors = {d: PriorClass(c["class"], c["since"]) for d, c in state.classes.items()}
    want = evaluate(scheme, full, at, previous=priors, cutoffs=cutoffs).classes
    assert {d: c["class"] for d, c in state.classes.items()} == {d: r.cls for d, r in want.items()}
    # Its review instant is the full evaluation's (nothing due was skipped or lost).
    assert (
        state.next_review_at
        == evaluate(scheme, full, at, previous=priors, cutoffs=cutoffs).next_review_at
    )
