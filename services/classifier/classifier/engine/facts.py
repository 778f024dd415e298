"""A customer's facts, and folding activity events into them. Pure: no I/O.

Facts are what we know happened (orders with refunds and cancellations, calls,
CRM profile and deal stage, salespeople's direct channels to the customer such
as WeCom contacts, and CRM follow-ups). They are stored as a JSON document per customer
(`to_doc` / `from_doc`), so a batch loads and saves each customer in one row.
A refund or cancellation that arrives before its order is kept on a
placeholder order and applied once the order arrives, so arrival order does
not change the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from eventschemas.events import (
    ActivityEvent,
    CallLogged,
    CrmContactUpdated,
    CrmDealStageChanged,
    CrmRelationshipChanged,
    CrmTouchpointLogged,
    OrderCancelled,
    OrderPlaced,
    OrderRefunded,
)

DOC_VERSION = 1
INTENT_LEVELS = {"none": 0, "low": 1, "medium": 2, "high": 3}
# State of a salesperson's channel to the customer: open, or who closed it.
LINK_OPEN = "open"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (no float rounding)."""
    return (moment - EPOCH) // MICROS


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(slots=True)
class OrderFact:
    """One order; `placed_at` is None while only its refund/cancel has arrived."""

    order_id: str
    placed_at: int | None = None  # epoch microseconds
    amount: float = 0.0  # base currency
    status: str = "placed"
    cancelled: bool = False
    refunds: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (ts, amount)
    revision: int = -1

    @property
    def refunded(self) -> float:
        return sum(amount for _, amount in self.refunds.values())

    @property
    def counts(self) -> bool:
        """An order counts as a purchase once placed and not cancelled."""
        return self.placed_at is not None and not self.cancelled

    @property
    def net_amount(self) -> float:
        return max(self.amount - self.refunded, 0.0) if self.counts else 0.0


@dataclass(slots=True)
class CallFact:
    call_id: str
    started_at: int
    outcome: str
    intent: int | None
    duration: int
    direction: str


@dataclass(slots=True)
class TouchFact:
    """A touch point: a follow-up, or a message channel opened or used."""

    touch_id: str
    at: int
    kind: str


@dataclass(slots=True)
class FactsView:
    """Time-sorted projections of the facts, built once per change of the facts.

    Features read these instead of re-deriving them, and `memo` keeps
    per-feature derived rows (e.g. filtered, with prefix sums).
    """

    purchase_times: list[int]
    purchases: list[OrderFact]
    refund_times: list[int]
    refund_amounts: list[float]
    call_times: list[int]
    calls: list[CallFact]
    touch_times: list[int]
    touches: list[TouchFact]
    memo: dict[str, Any]

    @classmethod
    def build(cls, facts: CustomerFacts) -> FactsView:
        bought = sorted(
            (o for o in facts.orders.values() if o.counts),
            key=lambda o: (o.placed_at or 0, o.order_id),
        )
        refunds = sorted(r for o in facts.orders.values() for r in o.refunds.values())
        calls = sorted(facts.calls.values(), key=lambda c: (c.started_at, c.call_id))
        touches = sorted(
            (TouchFact(tid, at, kind) for tid, (at, kind) in facts.touches.items()),
            key=lambda t: (t.at, t.touch_id),
        )
        return cls(
            purchase_times=[o.placed_at or 0 for o in bought],
            purchases=bought,
            refund_times=[t for t, _ in refunds],
            refund_amounts=[a for _, a in refunds],
            call_times=[c.started_at for c in calls],
            calls=calls,
            touch_times=[t.at for t in touches],
            touches=touches,
            memo={},
        )


@dataclass(slots=True)
class CustomerFacts:
    """Everything known about one customer, as plain values."""

    customer_id: str
    orders: dict[str, OrderFact] = field(default_factory=dict)
    calls: dict[str, CallFact] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    attributes_at: int = 0
    tags: list[str] = field(default_factory=list)
    deal_stage: str | None = None
    deal_stage_at: int | None = None
    deal_stages_seen: list[str] = field(default_factory=list)
    first_seen_at: int | None = None
    # "<channel>:<salesperson>" -> (LINK_OPEN or the RelationshipChange that closed it, at)
    links: dict[str, tuple[str, int]] = field(default_factory=dict)
    touches: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (at, kind)
    _view: FactsView | None = field(default=None, repr=False, compare=False)

    def view(self) -> FactsView:
        """The sorted projections features read; rebuilt after facts change."""
        if self._view is None:
            self._view = FactsView.build(self)
        return self._view

    def _seen(self, ts: int) -> None:
        if self.first_seen_at is None or ts < self.first_seen_at:
            self.first_seen_at = ts

    def apply(self, event: ActivityEvent) -> None:
        """Fold one event into the facts; applying the same event twice is harmless."""
        self._view = None
        self._seen(to_micros(event.occurred_at()))
        match event:
            case OrderPlaced():
                order = self.orders.setdefault(event.order_id, OrderFact(event.order_id))
                if event.revision >= order.revision:
                    order.placed_at = to_micros(event.placed_at)
                    order.amount = float(event.amount_base)
                    order.status = event.status.value
                    order.revision = event.revision
                    if event.status.value == "cancelled":
                        order.cancelled = True
            case OrderRefunded():
                order = self.orders.setdefault(event.order_id, OrderFact(event.order_id))
                order.refunds[event.refund_id] = (
                    to_micros(event.refunded_at),
                    float(event.amount_base),
                )
            case OrderCancelled():
                order = self.orders.setdefault(event.order_id, OrderFact(event.order_id))
                order.cancelled = True
            case CallLogged():
                self.calls[event.call_id] = CallFact(
                    call_id=event.call_id,
                    started_at=to_micros(event.started_at),
                    outcome=event.outcome.value,
                    intent=INTENT_LEVELS[event.intent.value] if event.intent else None,
                    duration=event.duration_seconds,
                    direction=event.direction,
                )
            case CrmContactUpdated():
                # Last write wins by source time, so late CRM updates don't roll back.
                ts = to_micros(event.updated_at)
                if ts >= self.attributes_at:
                    self.attributes.update(event.attributes)
                    if event.tags is not None:
                        self.tags = sorted(set(event.tags))
                    self.attributes_at = ts
            case CrmDealStageChanged():
                ts = to_micros(event.changed_at)
                if event.stage not in self.deal_stages_seen:
                    self.deal_stages_seen.append(event.stage)
                if self.deal_stage_at is None or ts >= self.deal_stage_at:
                    self.deal_stage = event.stage
                    self.deal_stage_at = ts
            case CrmRelationshipChanged():
                self._relationship(event)
            case CrmTouchpointLogged():
                self.touches[f"{event.channel}:{event.touchpoint_id}"] = (
                    to_micros(event.touched_at),
                    event.kind or event.channel,
                )

    def _relationship(self, event: CrmRelationshipChanged) -> None:
        # The latest change by source time decides whether the channel is open.
        ts = to_micros(event.changed_at)
        key = f"{event.channel}:{event.owner_id}"
        opened = event.change.value in ("added", "edited")
        prior = self.links.get(key)
        if prior is None or ts >= prior[1]:
            self.links[key] = (LINK_OPEN if opened else event.change.value, ts)
        if opened:
            self.touches[f"{key}:{event.change.value}@{ts}"] = (
                ts,
                f"{event.channel}_{event.change.value}",
            )

    # ---- storage document ------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """Serialise to the JSON document stored per customer."""
        return {
            "v": DOC_VERSION,
            "orders": {
                o.order_id: [
                    o.placed_at,
                    o.amount,
                    o.status,
                    o.cancelled,
                    {k: list(v) for k, v in o.refunds.items()},
                    o.revision,
                ]
                for o in self.orders.values()
            },
            "calls": {
                c.call_id: [c.started_at, c.outcome, c.intent, c.duration, c.direction]
                for c in self.calls.values()
            },
            "attributes": self.attributes,
            "attributes_at": self.attributes_at,
            "tags": self.tags,
            "deal": [self.deal_stage, self.deal_stage_at, self.deal_stages_seen],
            "first_seen_at": self.first_seen_at,
            "links": {k: list(v) for k, v in self.links.items()},
            "touches": {k: list(v) for k, v in self.touches.items()},
        }

    @classmethod
    def from_doc(cls, customer_id: str, doc: dict[str, Any] | None) -> CustomerFacts:
        """Rebuild facts from a stored document (None for a new customer)."""
        facts = cls(customer_id)
        if not doc:
            return facts
        for oid, (placed, amount, status, cancelled, refunds, rev) in doc["orders"].items():
            facts.orders[oid] = OrderFact(
                oid,
                placed,
                amount,
                status,
                cancelled,
                {k: (v[0], v[1]) for k, v in refunds.items()},
                rev,
            )
        for cid, (started, outcome, intent, duration, direction) in doc["calls"].items():
            facts.calls[cid] = CallFact(cid, started, outcome, intent, duration, direction)
        facts.attributes = doc["attributes"]
        facts.attributes_at = doc["attributes_at"]
        facts.tags = doc["tags"]
        facts.deal_stage, facts.deal_stage_at, facts.deal_stages_seen = doc["deal"]
        facts.first_seen_at = doc["first_seen_at"]
        # Documents written before relationships and touch points existed lack these keys.
        facts.links = {k: (v[0], v[1]) for k, v in doc.get("links", {}).items()}
        facts.touches = {k: (v[0], v[1]) for k, v in doc.get("touches", {}).items()}
        return facts

    # ---- derived views used by features and aggregates -------------------

    def purchases(self) -> list[OrderFact]:
        """Orders that count as purchases, oldest first."""
        return sorted((o for o in self.orders.values() if o.counts), key=lambda o: o.placed_at or 0)
