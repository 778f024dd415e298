"""One activity event of every type, for tests that need the whole contract on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from eventschemas.events import (
    EVENT_TYPES,
    ActivityEvent,
    CallLogged,
    CallOutcome,
    CrmCompanyMerged,
    CrmCompanyUpdated,
    CrmContactMerged,
    CrmContactUpdated,
    CrmDealStageChanged,
    CrmRelationshipChanged,
    CrmTouchpointLogged,
    CustomerErasureRequested,
    OrderCancelled,
    OrderPlaced,
    OrderRefunded,
    RelationshipChange,
)


def one_of_each_type(customer: str, *, now: datetime | None = None) -> list[ActivityEvent]:
    """An event of every type in EVENT_TYPES for `customer`, oldest first."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    money = {"currency": "EUR", "base_currency": "USD"}
    events: list[ActivityEvent] = [
        CrmContactUpdated(
            customer_id=customer,
            crm_record_id="crm-1",
            updated_at=now - 9 * day,
            attributes={"lifecycle_stage": "customer"},
            tags=["vip"],
        ),
        CrmCompanyUpdated(
            customer_id=customer,
            crm_record_id="co-1",
            updated_at=now - 8 * day,
            attributes={"industry": "retail"},
        ),
        CallLogged(
            customer_id=customer,
            call_id="call-1",
            started_at=now - 7 * day,
            duration_seconds=120,
            outcome=CallOutcome.INTERESTED,
        ),
        CrmDealStageChanged(
            customer_id=customer, deal_id="deal-1", stage="proposal", changed_at=now - 6 * day
        ),
        OrderPlaced(
            customer_id=customer,
            order_id="o-1",
            amount=Decimal("250.00"),
            amount_base=Decimal("270.00"),
            placed_at=now - 5 * day,
            **money,
        ),
        OrderPlaced(
            customer_id=customer,
            order_id="o-2",
            amount=Decimal("40.00"),
            amount_base=Decimal("43.20"),
            placed_at=now - 4 * day,
            **money,
        ),
        OrderRefunded(
            customer_id=customer,
            refund_id="r-1",
            order_id="o-1",
            amount=Decimal("50.00"),
            amount_base=Decimal("54.00"),
            refunded_at=now - 3 * day,
            **money,
        ),
        OrderCancelled(customer_id=customer, order_id="o-2", cancelled_at=now - 2 * day),
        CrmRelationshipChanged(
            customer_id=customer,
            channel="wecom",
            owner_id="sales-1",
            change=RelationshipChange.ADDED,
            changed_at=now - day,
        ),
        CrmTouchpointLogged(
            customer_id=customer,
            touchpoint_id="tp-1",
            channel="fxiaoke",
            kind="visit",
            owner_id="sales-1",
            touched_at=now - day / 2,
        ),
        # The erasure of a customer nobody knows: nothing of `customer` goes.
        CustomerErasureRequested(
            customer_id=f"{customer}-gone",
            erasure_id="00000000-0000-4000-8000-000000000001",
            requested_at=now - day * 0.45,
        ),
        # Merges of customers nobody else knows: `customer` absorbs them.
        CrmContactMerged(
            customer_id=customer,
            absorbed_ids=[f"{customer}-dup"],
            merged_at=now - day / 3,
        ),
        CrmCompanyMerged(
            customer_id=customer,
            absorbed_ids=[f"{customer}-co-dup"],
            merged_at=now - day / 4,
        ),
    ]
    assert {e.TYPE for e in events} == set(EVENT_TYPES), "a new event type needs a sample here"
    return events
