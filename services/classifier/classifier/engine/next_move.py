"""What it would take: the nearest better class of a dimension and the smallest change
that reaches it, and when a class changes by itself. Pure.

For each comparison a rule (or band, or rank cut-off) makes, the engine knows a
lever: more orders, more revenue, more points, a call with some outcome or
intent, a CRM deal stage or attribute, a salesperson's contact, or time (an age
reaching a threshold). A candidate change is made of the levers of the failing
comparisons (all of them for `all`, one for `any`), and is kept only when the
engine, evaluating the customer's facts with the change applied (synthetic facts
at the evaluation instant, or the evaluation moved to a later instant for time),
really lands in that class: a suggestion never promises what the rules would not
do. Better classes are tried nearest first; `None` when none is reachable by
one kind of change, when the class is the best, when the dimension's classes
are not ordered (`ordered: false`), or under a manual override.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from classifier.engine.conditions import AllOf, AnyOf, Comparison, Condition, EvalContext
from classifier.engine.facts import (
    CALL,
    CONTACT,
    DEAL,
    INTENT_LEVELS,
    NUMBER,
    ORDER,
    RELATIONSHIP,
    CustomerFacts,
    Fact,
    FactsView,
    from_micros,
)
from classifier.engine.features import (
    DAY,
    AgeFeature,
    Feature,
    PointsFeature,
    StaticFeature,
    WindowFeature,
)
from classifier.engine.scheme import CompiledDimension

# How many instants ahead `changes_at` looks for the class to change by itself.
MAX_FLIPS = 2
# How many candidate changes per dimension are verified by evaluation (each is one
# evaluation of the dimension): past them, no `next` rather than a slow worker.
MAX_TRIES = 2
LEVELS = {v: k for k, v in INTENT_LEVELS.items()}
ORDER_COUNTS = frozenset({"order_count", "kept_orders", "orders_placed"})
REVENUES = frozenset({"net_revenue", "gross_revenue"})
CALL_COUNTS = {
    "interested_calls": "interested",
    "deal_closed_calls": "deal_closed",
    "connected_calls": "connected",
    "call_count": "connected",
}
WHOLE = frozenset({"orders", "calls", "intent", "contact"})
# Which lever to suggest first when several reach the class: what a salesperson can
# bring about (an order, a call, a contact) before what a CRM record says.
PREFERENCE = ("orders", "calls", "intent", "contact", "revenue", "points", "deal_stage", "time")
ATTRIBUTES = frozenset(
    {"industry", "employee_count", "annual_revenue", "region", "need_type", "satisfaction"}
)


@dataclass(frozen=True, slots=True)
class Move:
    """One kind of change: `amount` more of something, a value to set, or an instant."""

    kind: (
        str  # orders | revenue | points | calls | intent | deal_stage | attribute | contact | time
    )
    feature: str
    amount: float | None = None
    within_days: int | None = None
    at: int | None = None  # epoch µs, for time
    value: Any = None  # the stage, attribute value or call outcome

    def merged(self, other: Move) -> Move | None:
        """One change doing both, when they are of one kind; else None."""
        if self.kind != other.kind or self.kind not in ("orders", "revenue", "time", "calls"):
            return None
        if self.kind == "calls" and self.value != other.value:
            return None
        within = [w for w in (self.within_days, other.within_days) if w is not None]
        return Move(
            self.kind,
            self.feature if (self.amount or 0) >= (other.amount or 0) else other.feature,
            _max(self.amount, other.amount),
            min(within) if within else None,
            _max(self.at, other.at),
            self.value,
        )

    def document(self) -> dict[str, Any]:
        amount: float | int | None = self.amount
        if amount is not None and self.kind in WHOLE:
            amount = int(amount)
        out: dict[str, Any] = {
            "kind": self.kind,
            "feature": self.feature,
            "amount": amount,
            "within_days": self.within_days,
            "at": from_micros(self.at).isoformat() if self.at is not None else None,
        }
        if self.value is not None:
            out["value"] = self.value
        return out

    def text(self) -> dict[str, str]:
        n, d = self.amount, self.within_days
        within_en = f" within {d} days" if d else ""
        within_zh = f"{d}天内" if d else ""
        if self.kind == "orders":
            k = int(n or 1)
            return {
                "en": f"{k} more order{'s' if k != 1 else ''}{within_en}",
                "zh": f"{within_zh}再下{k}单",
            }
        if self.kind == "revenue":
            return {
                "en": f"{n:,.2f} more revenue{within_en}",
                "zh": f"{within_zh}再增加{n:,.2f}收入",
            }
        if self.kind == "points":
            return {
                "en": f"{n:g} more points of {self.feature}",
                "zh": f"{self.feature}再增加{n:g}分",
            }
        if self.kind == "calls":
            k = int(n or 1)
            return {
                "en": f"{k} more call{'s' if k != 1 else ''} ending {self.value}",
                "zh": f"再有{k}次结果为{self.value}的通话",
            }
        if self.kind == "intent":
            return {
                "en": f"a call where the agent judges intent {self.value}",
                "zh": f"一次坐席判断意向为{self.value}的通话",
            }
        if self.kind == "deal_stage":
            return {
                "en": f"the CRM deal reaches {self.value}",
                "zh": f"CRM商机阶段到达{self.value}",
            }
        if self.kind == "attribute":
            key = self.feature.removeprefix("attr.")
            return {"en": f"CRM {key} set to {self.value}", "zh": f"CRM属性{key}设为{self.value}"}
        if self.kind == "contact":
            return {
                "en": "a salesperson adds the customer on WeCom",
                "zh": "销售添加客户为企业微信联系人",
            }
        day = from_micros(self.at or 0).date().isoformat()
        return {"en": f"by itself on {day}", "zh": f"{day}自动达到"}


def _max(a: float | int | None, b: float | int | None) -> Any:
    known = [x for x in (a, b) if x is not None]
    return max(known) if known else None


def _needed(op: str, operand: Any, value: Any, *, whole: bool) -> float | None:
    """How much the value must grow for `value OP operand` to hold (None: growing won't)."""
    if not isinstance(operand, NUMBER) or isinstance(operand, bool):
        return None
    v = value if isinstance(value, NUMBER) and not isinstance(value, bool) else 0
    if op == "gte":
        need = operand - v
    elif op == "gt":
        need = (math.floor(operand) + 1 - v) if whole else (operand - v + 0.01)
    elif op == "eq" and operand >= v:
        need = operand - v
    else:
        return None
    if need <= 0:
        return None
    return float(math.ceil(need)) if whole else math.ceil(need * 100) / 100


def _lever(c: Comparison, ctx: EvalContext) -> Move | None:
    """The smallest change making one failing comparison hold, if it has a lever."""
    name, op, operand = c.feature, c.op, c.operand
    feature: Feature = ctx.features[name]
    value = ctx.value(name)
    if isinstance(feature, WindowFeature):
        if feature.window.to_days or feature.source != "orders":
            return None  # a past window or another source: no change today fills it
        within = math.ceil(feature.window.from_days)
        if feature.agg == "count" and not feature.where:
            need = _needed(op, operand, value, whole=True)
            return Move("orders", name, need, within) if need else None
        if feature.agg == "sum" and feature.field in ("amount", "net_amount"):
            need = _needed(op, operand, value, whole=False)
            return Move("revenue", name, need, within) if need else None
        if feature.agg == "last_days_ago" and op in ("lt", "lte") and operand >= 0:
            return Move("orders", name, 1.0, within)
        return None
    if isinstance(feature, PointsFeature):
        need = _needed(op, operand, value, whole=False)
        return Move("points", name, need) if need else None
    if isinstance(feature, AgeFeature):
        anchor = feature.anchor(ctx.facts)
        if name == "recency_days" and op in ("lt", "lte") and operand >= 0:
            return Move("orders", name, 1.0)
        if anchor is not None and op in ("gte", "gt") and isinstance(operand, NUMBER):
            days = math.floor(operand) + (1 if op == "gt" else 0)
            return Move("time", name, at=anchor + days * DAY)
        return None
    if not isinstance(feature, StaticFeature):
        return None
    if name in ORDER_COUNTS:
        need = _needed(op, operand, value, whole=True)
        return Move("orders", name, need) if need else None
    if name in REVENUES:
        need = _needed(op, operand, value, whole=False)
        return Move("revenue", name, need) if need else None
    if name in CALL_COUNTS:
        need = _needed(op, operand, value, whole=True)
        return Move("calls", name, need, value=CALL_COUNTS[name]) if need else None
    if name == "max_intent" and op in ("gte", "gt", "eq") and isinstance(operand, NUMBER):
        level = int(operand) + (1 if op == "gt" else 0)
        return Move("intent", name, float(level), value=LEVELS[level]) if level in LEVELS else None
    if name == "sales_contacts" and op in ("gte", "gt") and operand <= 1:
        return Move("contact", name, 1.0)
    if name == "deal_stage" and op in ("eq", "in"):
        stage = operand[0] if op == "in" else operand
        return Move("deal_stage", name, value=stage)
    if (name in ATTRIBUTES or name.startswith("attr.")) and op in ("eq", "in", "contains"):
        target = operand[0] if op == "in" else operand
        return Move("attribute", name, value=target)
    if (name in ATTRIBUTES or name.startswith("attr.")) and op in ("gte", "gt"):
        return Move("attribute", name, value=operand if op == "gte" else operand + 1)
    return None


def _candidates(cond: Condition, ctx: EvalContext) -> list[Move]:
    """Changes that might make `cond` hold, most likely first."""
    if cond.test(ctx):
        return []
    if isinstance(cond, Comparison):
        move = _lever(cond, ctx)
        return [move] if move is not None else []
    if isinstance(cond, AnyOf):
        return [m for part in cond.parts for m in _candidates(part, ctx)]
    if isinstance(cond, AllOf):
        combined: Move | None = None
        for part in cond.parts:
            if part.test(ctx):
                continue
            options = _candidates(part, ctx)
            if not options:
                return []
            if combined is None:
                combined = options[0]
                continue
            merged = next((m for o in options if (m := combined.merged(o)) is not None), None)
            if merged is None:
                return []
            combined = merged
        return [combined] if combined is not None else []
    return []


def _copied(view: FactsView | None) -> FactsView | None:
    """A view the synthetic facts can grow without touching the customer's own."""
    if view is None:
        return None
    return FactsView(
        list(view.purchase_times),
        list(view.purchases),
        view.refund_times,
        view.refund_amounts,
        list(view.call_times),
        list(view.calls),
        view.touch_times,
        view.touches,
        {},
    )


def _points_as_facts(move: Move, features: Mapping[str, Feature]) -> tuple[Move, int]:
    """Points as the facts that earn them: as many of the best-paid order or call as
    reach the amount (so the suggestion is checked with facts, like the others)."""
    feature = features[move.feature]
    assert isinstance(feature, PointsFeature)
    paid = [
        (p, key)
        for key, p in feature.points.items()
        if p > 0 and (key == "order" or key.startswith("call."))
    ]
    if not paid:
        return move, 0
    p, key = max(paid)
    count = math.ceil((move.amount or 0) / p)
    if key == "order":
        return Move("orders", move.feature, float(count)), count
    return Move("calls", move.feature, float(count), value=key.removeprefix("call.")), count


def apply_move(
    facts: CustomerFacts, move: Move, now: int, features: Mapping[str, Feature]
) -> CustomerFacts:
    """The customer's facts with the change made at `now` (synthetic facts): a copy,
    sharing nothing the change mutates with the customer's own."""
    out = replace(
        facts,
        orders=dict(facts.orders),
        calls=dict(facts.calls),
        attributes=dict(facts.attributes),
        attribute_sources={k: dict(v) for k, v in facts.attribute_sources.items()},
        deal_stages_seen=list(facts.deal_stages_seen),
        links=dict(facts.links),
        touches=dict(facts.touches),
        _view=_copied(facts._view),
        _order_docs=None,
        _call_docs=None,
    )
    count = int(move.amount or 1)
    if move.kind == "points":
        move, count = _points_as_facts(move, features)
    if move.kind in ("orders", "revenue"):
        amount = move.amount if move.kind == "revenue" else 1.0
        count = 1 if move.kind == "revenue" else count
        for i in range(count):
            body = {"a": amount, "s": "paid", "r": 0}
            out.apply_fact(Fact(ORDER, f"next-move-{i}", now, now, body))
    elif move.kind in ("calls", "intent"):
        outcome = move.value if move.kind == "calls" else "interested"
        intent = int(move.amount or 0) if move.kind == "intent" else None
        for i in range(count if move.kind == "calls" else 1):
            body = {"o": outcome, "i": intent, "d": 60, "w": "outbound"}
            out.apply_fact(Fact(CALL, f"next-move-{i}", now, now, body))
    elif move.kind == "deal_stage":
        out.apply_fact(Fact(DEAL, "", now, now, {"stage": move.value}))
    elif move.kind == "attribute":
        key = move.feature.removeprefix("attr.")
        out.apply_fact(Fact(CONTACT, "", now, now, {"attrs": {key: move.value}, "tags": None}))
    elif move.kind == "contact":
        body = {"ch": "wecom", "own": "next-move", "chg": "added"}
        out.apply_fact(Fact(RELATIONSHIP, "", now, now, body))
    return out


def _preference(move: Move) -> int:
    return PREFERENCE.index(move.kind) if move.kind in PREFERENCE else len(PREFERENCE)


def _conditions_for(dim: CompiledDimension, target: str) -> list[Condition]:
    return [r.when for r in dim.rules if r.cls == target]


def _threshold_moves(
    dim: CompiledDimension, ctx: EvalContext, target: str, cutoffs: Mapping[str, float]
) -> list[Move]:
    """For score, map and rank dimensions: the comparison that puts the customer in
    `target` (a band's minimum, a rank cut-off, a mapped value)."""
    spec = dim.spec.score or dim.spec.map or dim.spec.rank
    if spec is None:
        return []
    feature = spec.feature
    if dim.kind == "rank":
        cut = cutoffs.get(target)
        if cut is None:
            return []
        move = _lever(Comparison(feature, "gte", cut, lambda v: False), ctx)
        return [move] if move is not None else []
    bands = getattr(spec, "bands", None)
    if bands:
        mins = [b.min for b in bands if b.cls == target and b.min is not None]
        moves = [_lever(Comparison(feature, "gte", m, lambda v: False), ctx) for m in mins]
        return [m for m in moves if m is not None]
    values = getattr(spec, "values", None) or {}
    raw = next((k for k, v in values.items() if v == target), None)
    if raw is None:
        return []
    move = _lever(Comparison(feature, "eq", raw, lambda v: False), ctx)
    return [move] if move is not None else []


def next_move(
    dim: CompiledDimension,
    ctx: EvalContext,
    current: str,
    classify: Callable[[Move | None, int], str],
    cutoffs: Mapping[str, float],
) -> dict[str, Any] | None:
    """`{"class", "change", "text"}` for the nearest better class reachable by one kind
    of change, verified with `classify(change, at)` (the class with the change made, or
    with none at a later instant); None if there is none."""
    if not dim.spec.ordered or current not in dim.classes:
        return None
    landed: dict[Move, str] = {}  # a change tried for one class is not tried again
    for target in reversed(dim.classes[: dim.rank_of(current)]):
        if dim.kind == "rules":
            moves = [m for cond in _conditions_for(dim, target) for m in _candidates(cond, ctx)]
        else:
            moves = _threshold_moves(dim, ctx, target, cutoffs)
        moves.sort(key=_preference)
        for move in moves:
            if move not in landed:
                if len(landed) >= MAX_TRIES:
                    return None
                if move.kind == "time":
                    if move.at is None or move.at <= ctx.now:
                        continue
                    landed[move] = classify(None, move.at)
                else:
                    landed[move] = classify(move, ctx.now)
            if landed[move] == target:
                return {"class": target, "change": move.document(), "text": move.text()}
    return None


def changes_at(
    ctx: EvalContext,
    current: str,
    flip: int | None,
    classify: Callable[[int], tuple[str, int | None]],
) -> dict[str, Any] | None:
    """`{"class", "at", "text"}` when the class changes by itself (no new facts) at one of
    the next few instants it may change; None if it holds through them."""
    at = flip
    for _ in range(MAX_FLIPS):
        if at is None or at <= ctx.now:
            return None
        cls, following = classify(at)
        if cls != current:
            day = from_micros(at).date().isoformat()
            return {
                "class": cls,
                "at": from_micros(at).isoformat(),
                "text": {
                    "en": f"becomes {cls} on {day} unless something happens",
                    "zh": f"若无新动态将于{day}变为{cls}",
                },
            }
        at = following
    return None


def _reads(cond: Condition) -> list[str]:
    if isinstance(cond, Comparison):
        return [cond.feature]
    if isinstance(cond, AllOf):  # AnyOf too
        return [name for part in cond.parts for name in _reads(part)]
    return []


def basis(
    dim: CompiledDimension, ctx: EvalContext, current: str, cutoffs: Mapping[str, float]
) -> list[Any]:
    """The values `next_move` reads: while they stay the same, so does its answer."""
    if not dim.spec.ordered or current not in dim.classes:
        return []
    better = set(dim.classes[: dim.rank_of(current)])
    if not better:
        return []
    if dim.kind != "rules":
        spec = dim.spec.score or dim.spec.map or dim.spec.rank
        feature = spec.feature if spec is not None else None
        values = [ctx.value(feature)] if feature is not None else []
        return values + (
            [[[k, v] for k, v in sorted(cutoffs.items())]] if dim.kind == "rank" else []
        )
    names = dim.basis_names.get(current)
    if names is None:
        names = dim.basis_names[current] = tuple(
            dict.fromkeys(n for r in dim.rules if r.cls in better for n in _reads(r.when))
        )
    return [ctx.value(n) for n in names]
