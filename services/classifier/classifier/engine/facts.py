"""A customer's facts, and folding facts into them. Pure: no I/O.

Facts are what we know happened (orders with refunds and cancellations, calls,
CRM profile and deal stage, salespeople's direct channels to the customer such
as WeCom contacts, and CRM follow-ups). Every activity event becomes one `Fact`
(`fact_of`): a small record of what the engine needs, which the worker appends
to the facts log and folds into the customer's state (`CustomerFacts.apply`).
Folding is idempotent and independent of arrival order: a refund or
cancellation that arrives before its order is kept on a placeholder order and
applied once the order arrives.

The state stays small: detail is kept only for facts inside the scheme's
longest window (the horizon); older orders, refunds, calls and touch points are
folded into `Past`, a fixed-size summary (counts, sums, first/last instants,
decayed points). A fact that would have to change the summary (a backdated
order, a refund of a summarised order, a scheme whose points differ) is not
folded incrementally: `needs_rebuild` says so and the worker rebuilds the
customer from the facts log instead.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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

DOC_VERSION = 2
INTENT_LEVELS = {"none": 0, "low": 1, "medium": 2, "high": 3}
# State of a salesperson's channel to the customer: open, or who closed it.
LINK_OPEN = "open"
DAY_US = 86_400_000_000
# isinstance(x, int | float) builds a union type on every call; engine hot paths use this.
NUMBER = (int, float)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = timedelta(microseconds=1)

# Fact kinds: the facts log's `kind` column.
ORDER = "order"
REFUND = "refund"
CANCEL = "cancel"
CALL = "call"
CONTACT = "contact"
DEAL = "deal"
RELATIONSHIP = "relationship"
TOUCH = "touch"
FACT_KINDS = (ORDER, REFUND, CANCEL, CALL, CONTACT, DEAL, RELATIONSHIP, TOUCH)

# What a fact of each kind can change, for the scheme's dependency graph
# (features declare the aspects they read). "first_seen" is added when a fact
# moves the customer's first-seen instant.
ASPECTS: dict[str, frozenset[str]] = {
    ORDER: frozenset({"orders"}),
    REFUND: frozenset({"orders", "refunds"}),
    CANCEL: frozenset({"orders"}),
    CALL: frozenset({"calls"}),
    CONTACT: frozenset({"contact"}),
    DEAL: frozenset({"deal"}),
    RELATIONSHIP: frozenset({"links", "touches"}),
    TOUCH: frozenset({"touches"}),
}
ALL_ASPECTS = frozenset().union(*ASPECTS.values()) | {"first_seen"}


def to_micros(moment: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (no float rounding)."""
    return (moment - EPOCH) // MICROS


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing that happened to a customer, as the engine needs it.

    `key` names the entity (order, refund, call, touch point id); `at` is its
    business instant and `seen` the event's instant (epoch µs). `body` holds
    the rest in short keys; it is what the facts log stores (no call notes,
    no names or contact details).
    """

    kind: str
    key: str
    at: int
    seen: int
    body: dict[str, Any]


def fact_of(event: ActivityEvent, source: str | None = None) -> Fact:
    """The fact an activity event records; `source` is the envelope's (e.g.
    `crm/hubspot`), kept with CRM attributes for their precedence."""
    seen = to_micros(event.occurred_at())
    body: dict[str, Any]
    match event:
        case OrderPlaced():
            body = {
                "a": float(event.amount_base),
                "s": event.status.value,
                "r": event.revision,
            }
            return Fact(ORDER, event.order_id, to_micros(event.placed_at), seen, body)
        case OrderRefunded():
            body = {"o": event.order_id, "a": float(event.amount_base)}
            return Fact(REFUND, event.refund_id, to_micros(event.refunded_at), seen, body)
        case OrderCancelled():
            return Fact(CANCEL, event.order_id, seen, seen, {})
        case CallLogged():
            body = {
                "o": event.outcome.value,
                "i": INTENT_LEVELS[event.intent.value] if event.intent else None,
                "d": event.duration_seconds,
                "w": event.direction,
            }
            return Fact(CALL, event.call_id, to_micros(event.started_at), seen, body)
        case CrmContactUpdated():
            body = {"attrs": dict(event.attributes), "tags": event.tags}
            if source is not None:
                body["src"] = source
            return Fact(CONTACT, "", to_micros(event.updated_at), seen, body)
        case CrmDealStageChanged():
            return Fact(DEAL, "", to_micros(event.changed_at), seen, {"stage": event.stage})
        case CrmRelationshipChanged():
            body = {"ch": event.channel, "own": event.owner_id, "chg": event.change.value}
            return Fact(RELATIONSHIP, "", to_micros(event.changed_at), seen, body)
        case CrmTouchpointLogged():
            body = {"kind": event.kind or event.channel}
            key = f"{event.channel}:{event.touchpoint_id}"
            return Fact(TOUCH, key, to_micros(event.touched_at), seen, body)
    raise TypeError(f"no fact for {type(event).__name__}")


def _opens(change: str) -> bool:
    return change in ("added", "edited")


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


def undone(order: OrderFact, period_us: int | None) -> bool:
    """True when a placed order was undone: cancelled, or (with a cancellation period)
    refunded in full within that period of being placed."""
    if order.placed_at is None:
        return False
    if order.cancelled:
        return True
    if period_us is None or not order.refunds or order.amount <= 0:
        return False
    within = all(at - order.placed_at <= period_us for at, _ in order.refunds.values())
    return within and order.refunded >= order.amount - 1e-6


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
class PointsSpec:
    """A points score's definition, as compaction needs it."""

    points: Mapping[str, float]
    half_life_days: float

    def of(self, kind: str, detail: str | None = None) -> float | None:
        """Points for a fact: `order`, `refund`, `call[.outcome]`, `touch[.kind]`."""
        pts = self.points
        if detail is not None and f"{kind}.{detail}" in pts:
            return pts[f"{kind}.{detail}"]
        return pts.get(kind)

    def decay(self, dt_us: int) -> float:
        return float(2.0 ** (-dt_us / (self.half_life_days * DAY_US)))


@dataclass(slots=True)
class Past:
    """Summary of the facts before `until`, whose detail is no longer kept.

    Fixed size whatever the history's length. `spec` names the points
    definitions it was built for; a scheme with others needs a rebuild.
    """

    until: int
    spec: str = ""
    orders: int = 0  # summarised orders of any state
    purchases: int = 0
    gross: float = 0.0
    first: int | None = None
    last: int | None = None
    gap_sq_days: float = 0.0  # sum of squared gaps between consecutive purchases (days²)
    refunded: float = 0.0
    calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    max_intent: int | None = None
    last_call: tuple[int, str, str] | None = None  # (at, call id, outcome)
    touches: int = 0
    last_touch: int | None = None
    points: dict[str, float] = field(default_factory=dict)  # name -> value at `until`
    undone: int = 0  # purchases refunded in full within the scheme's cancellation period

    def score(self, name: str, spec: PointsSpec, now: int) -> float:
        value = self.points.get(name, 0.0)
        return value * spec.decay(now - self.until) if value else 0.0

    def to_doc(self) -> list[Any]:
        return [
            self.until,
            self.spec,
            self.orders,
            self.purchases,
            self.gross,
            self.first,
            self.last,
            self.gap_sq_days,
            self.refunded,
            self.calls,
            self.outcomes,
            self.max_intent,
            list(self.last_call) if self.last_call else None,
            self.touches,
            self.last_touch,
            self.points,
            self.undone,
        ]

    @classmethod
    def from_doc(cls, doc: list[Any]) -> Past:
        past = cls(*doc)
        if past.last_call is not None:
            at, cid, outcome = past.last_call
            past.last_call = (at, cid, outcome)
        return past


@dataclass(slots=True)
class FactsView:
    """Time-sorted projections of the detailed facts, built once per change.

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

    def appended_order(self, order: OrderFact) -> FactsView | None:
        """This view with a new order added, if it sorts last (else None: rebuild)."""
        if not order.counts:
            if order.refunds:
                return None
            self.memo.clear()
            return self
        at = order.placed_at or 0
        if self.purchases and (at, order.order_id) <= (
            self.purchase_times[-1],
            self.purchases[-1].order_id,
        ):
            return None
        self.purchase_times.append(at)
        self.purchases.append(order)
        return self._grown(ORDER, order)

    def appended_call(self, call: CallFact) -> FactsView | None:
        """This view with a new call added, if it sorts last (else None: rebuild)."""
        if self.calls and (call.started_at, call.call_id) <= (
            self.call_times[-1],
            self.calls[-1].call_id,
        ):
            return None
        self.call_times.append(call.started_at)
        self.calls.append(call)
        return self._grown(CALL, call)

    def _grown(self, kind: str, item: OrderFact | CallFact) -> FactsView:
        """Derived rows and sums that can take the new last fact are updated (`grow`
        returns True); the others are dropped and recomputed on use."""
        memo = self.memo
        for key, entry in list(memo.items()):
            grow = getattr(entry, "grow", None)
            if grow is None or not grow(kind, item):
                del memo[key]
        return self

    @classmethod
    def build(cls, facts: CustomerFacts) -> FactsView:
        bought = sorted(
            (o for o in facts.orders.values() if o.counts),
            key=lambda o: (o.placed_at or 0, o.order_id),
        )
        refunds = [r for o in facts.orders.values() for r in o.refunds.values()]
        refunds.extend((t, a) for t, a, _ in facts.loose_refunds.values())
        refunds.sort()
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
    """Everything known about one customer: detail since `past.until`, a summary before."""

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
    # Refunds (id -> (at, amount, order id)) of orders already summarised in `past`.
    loose_refunds: dict[str, tuple[int, float, str]] = field(default_factory=dict)
    past: Past | None = None
    # Per CRM attribute, the latest value each source gave: {attr: {source: [value, at]}}
    # (source "" when the event named none). See `attribute` for the precedence.
    attribute_sources: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    _view: FactsView | None = field(default=None, repr=False, compare=False)
    # The stored document's "orders" and "calls", kept up to date entry by entry as
    # facts are folded in (None: built on the next `to_doc`), so saving a customer
    # with many orders does not rebuild every entry.
    _order_docs: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)
    _call_docs: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)

    def view(self) -> FactsView:
        """The sorted projections features read; rebuilt after facts change."""
        if self._view is None:
            self._view = FactsView.build(self)
        return self._view

    def needs_rebuild(self, fact: Fact) -> bool:
        """True when folding `fact` would have to change the summary of the past."""
        past = self.past
        if past is None:
            return False
        kind = fact.kind
        if kind in (ORDER, REFUND, CALL, TOUCH) and fact.at < past.until:
            return True
        if kind == RELATIONSHIP and _opens(fact.body["chg"]) and fact.at < past.until:
            return True
        if kind in (REFUND, CANCEL) and past.orders:
            order_id = fact.body["o"] if kind == REFUND else fact.key
            return order_id not in self.orders  # maybe a summarised order
        return False

    def apply(self, event: ActivityEvent) -> frozenset[str]:
        """Fold one event into the facts (see `apply_fact`)."""
        return self.apply_fact(fact_of(event))

    def snapshot(self) -> CustomerFacts:
        """A copy sharing nothing that folding later facts in changes (apply_fact
        mutates orders in place and the containers below; calls, links, touches and
        attribute values are replaced, never mutated): the facts an evaluation saw,
        kept for building its explanation later. Derived views are rebuilt."""
        return replace(
            self,
            orders={
                key: OrderFact(
                    o.order_id, o.placed_at, o.amount, o.status, o.cancelled, dict(o.refunds),
                    o.revision,
                )
                for key, o in self.orders.items()
            },
            calls=dict(self.calls),
            attributes=dict(self.attributes),
            tags=list(self.tags),
            deal_stages_seen=list(self.deal_stages_seen),
            links=dict(self.links),
            touches=dict(self.touches),
            loose_refunds=dict(self.loose_refunds),
            past=copy.copy(self.past),
            attribute_sources={k: dict(v) for k, v in self.attribute_sources.items()},
            _view=None,
            _order_docs=None,
            _call_docs=None,
        )  # fmt: skip

    def detail_size(self) -> int:
        """How many orders and calls are kept in detail (what a snapshot copies)."""
        return len(self.orders) + len(self.calls)

    def aspects_of(self, fact: Fact) -> frozenset[str]:
        """The aspects folding `fact` in may change (what `apply_fact` returns)."""
        if self.first_seen_at is None or fact.seen < self.first_seen_at:
            return ASPECTS[fact.kind] | {"first_seen"}
        return ASPECTS[fact.kind]

    def apply_fact(self, fact: Fact) -> frozenset[str]:
        """Fold one fact in; applying the same fact twice is harmless.

        Returns the aspects that may have changed (see ASPECTS). The caller
        checks `needs_rebuild` first.
        """
        view, self._view = self._view, None
        aspects = self.aspects_of(fact)
        if self.first_seen_at is None or fact.seen < self.first_seen_at:
            self.first_seen_at = fact.seen
        body = fact.body
        kind = fact.kind
        if kind == ORDER:
            known = fact.key in self.orders
            order = self.orders.setdefault(fact.key, OrderFact(fact.key))
            if body["r"] >= order.revision:
                order.placed_at = fact.at
                order.amount = body["a"]
                order.status = body["s"]
                order.revision = body["r"]
                if body["s"] == "cancelled":
                    order.cancelled = True
            self._order_changed(order)
            if view is not None and not known:
                # The common case, a new order after the others: the sorted
                # projections grow by one instead of being rebuilt.
                self._view = view.appended_order(order)
        elif kind == REFUND:
            order = self.orders.setdefault(body["o"], OrderFact(body["o"]))
            order.refunds[fact.key] = (fact.at, body["a"])
            self._order_changed(order)
        elif kind == CANCEL:
            order = self.orders.setdefault(fact.key, OrderFact(fact.key))
            order.cancelled = True
            self._order_changed(order)
        elif kind == CALL:
            known = fact.key in self.calls
            call = self.calls[fact.key] = CallFact(
                fact.key, fact.at, body["o"], body["i"], body["d"], body["w"]
            )
            if self._call_docs is not None:
                self._call_docs[fact.key] = _call_doc(call)
            if view is not None and not known:
                self._view = view.appended_call(call)
        elif kind == CONTACT:
            src = body.get("src", "")
            for key, value in body["attrs"].items():
                given = self.attribute_sources.setdefault(key, {})
                if src not in given or fact.at >= given[src][1]:
                    given[src] = [value, fact.at]
            # Last write wins by source time, so late CRM updates don't roll back.
            if fact.at >= self.attributes_at:
                self.attributes.update(body["attrs"])
                if body["tags"] is not None:
                    self.tags = sorted(set(body["tags"]))
                self.attributes_at = fact.at
        elif kind == DEAL:
            stage = body["stage"]
            if stage not in self.deal_stages_seen:
                self.deal_stages_seen.append(stage)
            if self.deal_stage_at is None or fact.at >= self.deal_stage_at:
                self.deal_stage = stage
                self.deal_stage_at = fact.at
        elif kind == RELATIONSHIP:
            self._relationship(fact)
        elif kind == TOUCH:
            self.touches[fact.key] = (fact.at, body["kind"])
        return aspects

    def attribute(self, key: str, order: Sequence[str]) -> tuple[Any, str | None]:
        """(value, source) of a CRM attribute: from the first source in `order` that gave
        one, then the most recent of the others; the last written value when no source
        was recorded (facts folded before sources were kept)."""
        given = self.attribute_sources.get(key)
        if not given:
            return self.attributes.get(key), None
        rank = {name: i for i, name in enumerate(order)}
        src, (value, _) = min(
            given.items(), key=lambda kv: (rank.get(kv[0], len(rank)), -kv[1][1], kv[0])
        )
        return value, src or None

    def attribute_conflicts(self) -> dict[str, dict[str, Any]]:
        """Attributes that named sources disagree on: {attr: {source: value}}."""
        out: dict[str, dict[str, Any]] = {}
        for key, given in self.attribute_sources.items():
            named = {src: v for src, (v, _) in given.items() if src}
            if len({repr(v) for v in named.values()}) > 1:
                out[key] = named
        return out

    def _order_changed(self, order: OrderFact) -> None:
        if self._order_docs is not None:
            self._order_docs[order.order_id] = _order_doc(order)

    def _relationship(self, fact: Fact) -> None:
        # The latest change by source time decides whether the channel is open.
        ts, change = fact.at, fact.body["chg"]
        key = f"{fact.body['ch']}:{fact.body['own']}"
        prior = self.links.get(key)
        if prior is None or ts >= prior[1]:
            self.links[key] = (LINK_OPEN if _opens(change) else change, ts)
        if _opens(change):
            self.touches[f"{key}:{change}@{ts}"] = (ts, f"{fact.body['ch']}_{change}")

    # ---- the summary of the past ------------------------------------------

    def oldest_detail(self) -> int | None:
        """The earliest instant among the facts kept in detail (None if none)."""
        times = [o.placed_at for o in self.orders.values() if o.placed_at is not None]
        times += [c.started_at for c in self.calls.values()]
        times += [at for at, _ in self.touches.values()]
        times += [at for at, _, _ in self.loose_refunds.values()]
        return min(times) if times else None

    def compact(
        self,
        until: int,
        spec: str,
        points: Mapping[str, PointsSpec],
        *,
        period: int | None = None,
    ) -> None:
        """Fold the detail of facts before `until` into the summary of the past.

        `period` is the scheme's cancellation period (µs; see `undone`), part of `spec`.

        Windows of the scheme must not reach before `until` at any instant the
        customer is evaluated again; the caller picks it from the horizon.
        """
        past = self.past
        if past is None:
            past = self.past = Past(until, spec)
        elif until <= past.until:
            return
        else:
            for name, ps in points.items():
                if name in past.points:
                    past.points[name] *= ps.decay(until - past.until)
            past.until = until
        self._view = None
        self._order_docs = self._call_docs = None  # rebuilt at the next save

        def add_points(kind: str, detail: str | None, at: int) -> None:
            for name, ps in points.items():
                p = ps.of(kind, detail)
                if p is not None:
                    past.points[name] = past.points.get(name, 0.0) + p * ps.decay(until - at)

        def add_refund(at: int, amount: float) -> None:
            past.refunded += amount
            add_points("refund", None, at)

        old = sorted(
            (o for o in self.orders.values() if o.placed_at is not None and o.placed_at < until),
            key=lambda o: (o.placed_at or 0, o.order_id),
        )
        for o in old:
            del self.orders[o.order_id]
            past.orders += 1
            if o.counts:
                at = o.placed_at or 0
                if past.last is not None:
                    past.gap_sq_days += ((at - past.last) / DAY_US) ** 2
                past.first = at if past.first is None else past.first
                past.last = at
                past.purchases += 1
                past.undone += undone(o, period)
                past.gross += o.amount
                add_points("order", None, at)
            for rid, (at, amount) in o.refunds.items():
                if at < until:
                    add_refund(at, amount)
                else:
                    self.loose_refunds[rid] = (at, amount, o.order_id)
        for rid, (at, amount, _) in list(self.loose_refunds.items()):
            if at < until:
                del self.loose_refunds[rid]
                add_refund(at, amount)
        for c in sorted(
            (c for c in self.calls.values() if c.started_at < until),
            key=lambda c: (c.started_at, c.call_id),
        ):
            del self.calls[c.call_id]
            past.calls += 1
            past.outcomes[c.outcome] = past.outcomes.get(c.outcome, 0) + 1
            if c.intent is not None and (past.max_intent is None or c.intent > past.max_intent):
                past.max_intent = c.intent
            past.last_call = (c.started_at, c.call_id, c.outcome)
            add_points("call", c.outcome, c.started_at)
        for tid, (at, kind) in sorted(self.touches.items(), key=lambda kv: (kv[1][0], kv[0])):
            if at >= until:
                continue
            del self.touches[tid]
            past.touches += 1
            past.last_touch = at
            add_points("touch", kind, at)

    # ---- storage document ------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """Serialise to the JSON document stored per customer."""
        doc: dict[str, Any] = {
            "v": DOC_VERSION,
            "orders": self._orders_doc(),
            "calls": self._calls_doc(),
            "attributes": self.attributes,
            "attributes_at": self.attributes_at,
            "tags": self.tags,
            "deal": [self.deal_stage, self.deal_stage_at, self.deal_stages_seen],
            "first_seen_at": self.first_seen_at,
            "links": {k: list(v) for k, v in self.links.items()},
            "touches": {k: list(v) for k, v in self.touches.items()},
        }
        if self.attribute_sources:
            doc["attr_src"] = self.attribute_sources
            conflicts = self.attribute_conflicts()
            if conflicts:
                doc["conflicts"] = conflicts
        if self.loose_refunds:
            doc["loose_refunds"] = {k: list(v) for k, v in self.loose_refunds.items()}
        if self.past is not None:
            doc["past"] = self.past.to_doc()
        return doc

    def _orders_doc(self) -> dict[str, list[Any]]:
        docs = self._order_docs
        if docs is None or len(docs) != len(self.orders):
            docs = self._order_docs = {oid: _order_doc(o) for oid, o in self.orders.items()}
        return docs

    def _calls_doc(self) -> dict[str, list[Any]]:
        docs = self._call_docs
        if docs is None or len(docs) != len(self.calls):
            docs = self._call_docs = {cid: _call_doc(c) for cid, c in self.calls.items()}
        return docs

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
        # The stored entries are the document's from now on (see _order_docs).
        facts._order_docs, facts._call_docs = doc["orders"], doc["calls"]
        facts.attributes = doc["attributes"]
        facts.attributes_at = doc["attributes_at"]
        facts.tags = doc["tags"]
        facts.deal_stage, facts.deal_stage_at, facts.deal_stages_seen = doc["deal"]
        facts.first_seen_at = doc["first_seen_at"]
        # Version 1 documents may lack relationships and touch points, and have no past.
        facts.links = {k: (v[0], v[1]) for k, v in doc.get("links", {}).items()}
        facts.touches = {k: (v[0], v[1]) for k, v in doc.get("touches", {}).items()}
        facts.loose_refunds = {
            k: (v[0], v[1], v[2]) for k, v in doc.get("loose_refunds", {}).items()
        }
        if "past" in doc:
            facts.past = Past.from_doc(doc["past"])
        facts.attribute_sources = doc.get("attr_src", {})
        return facts


def _order_doc(o: OrderFact) -> list[Any]:
    refunds = {k: list(v) for k, v in o.refunds.items()}
    return [o.placed_at, o.amount, o.status, o.cancelled, refunds, o.revision]


def _call_doc(c: CallFact) -> list[Any]:
    return [c.started_at, c.outcome, c.intent, c.duration, c.direction]


def rebuild(customer_id: str, facts: Iterable[Fact]) -> CustomerFacts:
    """Fold facts (in their arrival order) into a fresh customer, with full detail."""
    state = CustomerFacts(customer_id)
    for fact in facts:
        state.apply_fact(fact)
    return state


def points_spec_key(points: Mapping[str, PointsSpec], period: int | None = None) -> str:
    """A stable name for a set of points definitions and cancellation period (see
    Past.spec)."""
    parts = [
        f"{name}:{spec.half_life_days!r}:{sorted(spec.points.items())!r}"
        for name, spec in sorted(points.items())
    ]
    if period is not None:
        parts.append(f"cancellation:{period}")
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()[:12]
