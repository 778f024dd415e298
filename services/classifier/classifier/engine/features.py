"""Features: values computed from a customer's facts at an instant. Pure.

Every feature also knows how it moves with time, so the engine can tell the
earliest future instant at which a condition on it could change
(`next_flip`). There are four behaviours:

- static: depends on facts only (lifetime totals, CRM attributes);
- age: whole days since an anchor instant (recency, tenure); changes at
  anchor + k days, so a comparison flips at a computable instant;
- window: an aggregate over facts inside a sliding window; constant between
  the instants where a fact enters or leaves the window;
- decay: a points score with a half-life, S(t) = S(now) * 2^(-(t-now)/h)
  between facts, so a threshold is crossed at a computable instant.

All instants are integer epoch microseconds, so boundaries are exact.
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from classifier.engine.facts import (
    ALL_ASPECTS,
    DAY_US,
    LINK_OPEN,
    NUMBER,
    CallFact,
    CustomerFacts,
    FactsView,
    OrderFact,
    PointsSpec,
    TouchFact,
    from_micros,
    undone,
)

DAY = DAY_US  # microseconds
CONNECTED_OUTCOMES = frozenset(
    {"connected", "interested", "not_interested", "callback_requested", "deal_closed"}
)
INTERESTED_OUTCOMES = frozenset({"interested", "callback_requested", "deal_closed"})

Truth = Callable[[Any], object]  # compared with != to detect a change


class Feature:
    """Base: a named value with a time behaviour."""

    name: str
    description: str
    # False when next_flip is where the value itself next changes, whatever the test.
    flip_depends_on_test: bool = True
    # The aspects of the facts it reads (see facts.ASPECTS): a fact that changes
    # none of them leaves the value as it was.
    reads: frozenset[str] = ALL_ASPECTS

    def value(self, facts: CustomerFacts, now: int) -> Any:
        raise NotImplementedError

    def next_flip(
        self, facts: CustomerFacts, now: int, truth: Truth, operands: Sequence[Any]
    ) -> int | None:
        """Earliest instant > now at which truth(value) may differ from now; None if never."""
        return None

    def motion(self, facts: CustomerFacts, at: int) -> list[Any] | None:
        """How the value moves after `at` with no new facts, until the next window
        change (a review instant): ["age", anchor] (whole days since the anchor),
        ["decay", value at `at`, `at`, half-life µs], or None (it does not move)."""
        return None


@dataclass(slots=True)
class StaticFeature(Feature):
    name: str
    compute: Callable[[CustomerFacts], Any]
    description: str = ""
    reads: frozenset[str] = ALL_ASPECTS

    def value(self, facts: CustomerFacts, now: int) -> Any:
        return self.compute(facts)


@dataclass(slots=True)
class AgeFeature(Feature):
    """Whole days elapsed since an anchor instant; None without an anchor."""

    name: str
    anchor: Callable[[CustomerFacts], int | None]
    description: str = ""
    reads: frozenset[str] = ALL_ASPECTS

    def value(self, facts: CustomerFacts, now: int) -> int | None:
        at = self.anchor(facts)
        return None if at is None else (now - at) // DAY

    def next_flip(
        self, facts: CustomerFacts, now: int, truth: Truth, operands: Sequence[Any]
    ) -> int | None:
        at = self.anchor(facts)
        if at is None:
            return None
        current = (now - at) // DAY
        return _age_flip(at, current, truth, operands)

    def motion(self, facts: CustomerFacts, at: int) -> list[Any] | None:
        anchor = self.anchor(facts)
        return None if anchor is None else ["age", anchor]


def _age_flip(anchor: int, current: int, truth: Truth, operands: Sequence[Any]) -> int | None:
    """First whole-day age > current at which the truth differs, as an instant."""
    now_truth = truth(current)
    # Keyed with each operand's type: (True,) == (1,) as tuples, but not as operands.
    key = tuple((x.__class__, x) for x in operands)
    try:
        ages = _ages_to_try(key)
    except TypeError:  # an operand that cannot be a cache key (a list in a list)
        ages = _ages_to_try.__wrapped__(key)
    for k in ages:
        if k > current and truth(k) != now_truth:
            return anchor + k * DAY
    return None


@functools.lru_cache(maxsize=1024)
def _ages_to_try(operands: tuple[tuple[type, Any], ...]) -> tuple[int, ...]:
    """The whole-day ages at which a comparison with these operands (type, value) may
    change, sorted (a rule's constants: worked out once per comparison)."""
    candidates: set[int] = set()
    for _, x in operands:
        if isinstance(x, NUMBER) and not isinstance(x, bool) and math.isfinite(x):
            candidates.update({math.floor(x), math.floor(x) + 1, math.ceil(x)})
    return tuple(sorted(candidates))


# ---- windows -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Facts with time t count when now - from_days < t <= now - to_days."""

    from_days: float
    to_days: float = 0.0

    @property
    def leave(self) -> int:
        return int(self.from_days * DAY)

    @property
    def enter(self) -> int:
        return int(self.to_days * DAY)

    def span(self, times: list[int], now: int) -> tuple[int, int]:
        """Index range [i, j) of the sorted `times` inside the window at `now`."""
        return bisect_right(times, now - self.leave), bisect_right(times, now - self.enter)

    def next_change(self, times: list[int], now: int) -> int | None:
        """Earliest instant > now at which a fact enters or leaves the window."""
        best: int | None = None
        for offset in (self.enter, self.leave):
            k = bisect_right(times, now - offset)  # first t with t + offset > now
            if k < len(times) and (best is None or times[k] + offset < best):
                best = times[k] + offset
        return best


ORDER_FIELDS: dict[str, Callable[[OrderFact], Any]] = {
    "amount": lambda o: o.amount,
    "net_amount": lambda o: o.net_amount,
    "refunded": lambda o: o.refunded,
    "status": lambda o: o.status,
}
CALL_FIELDS: dict[str, Callable[[CallFact], Any]] = {
    "duration": lambda c: c.duration,
    "intent": lambda c: c.intent,
    "outcome": lambda c: c.outcome,
    "direction": lambda c: c.direction,
}
REFUND_FIELDS: dict[str, Callable[[float], Any]] = {"amount": lambda amount: amount}
TOUCH_FIELDS: dict[str, Callable[[TouchFact], Any]] = {"kind": lambda t: t.kind}


def _series(view: FactsView, source: str) -> tuple[list[int], list[Any]]:
    if source == "orders":
        return view.purchase_times, view.purchases
    if source == "refunds":
        return view.refund_times, view.refund_amounts
    if source == "touchpoints":
        return view.touch_times, view.touches
    return view.call_times, view.calls


SOURCES: dict[str, dict[str, Any]] = {
    "orders": ORDER_FIELDS,
    "refunds": REFUND_FIELDS,
    "calls": CALL_FIELDS,
    "touchpoints": TOUCH_FIELDS,
}
AGGREGATES = ("count", "sum", "avg", "min", "max", "distinct", "first_days_ago", "last_days_ago")
SOURCE_READS: dict[str, frozenset[str]] = {
    "orders": frozenset({"orders"}),
    "refunds": frozenset({"refunds"}),
    "calls": frozenset({"calls"}),
    "touchpoints": frozenset({"touches"}),
}


@dataclass(slots=True)
class WindowFeature(Feature):
    """An aggregate over one source's facts inside a sliding window."""

    name: str
    source: str
    agg: str
    window: Window
    field: str | None = None
    where: dict[str, frozenset[Any]] | None = None
    description: str = ""

    @property
    def flip_depends_on_test(self) -> bool:  # type: ignore[override]
        return self.agg in ("first_days_ago", "last_days_ago")

    @property
    def reads(self) -> frozenset[str]:  # type: ignore[override]
        return SOURCE_READS[self.source]

    def _rows(self, facts: CustomerFacts) -> _Rows:
        """Sorted times and rows of this feature's source, filtered once per facts and
        grown in place when a new last fact arrives."""
        view = facts.view()
        key = f"rows:{self.name}"
        cached = view.memo.get(key)
        if cached is None:
            times, rows = _series(view, self.source)
            keep = self._keep()
            if keep is not None:
                picked = [i for i, r in enumerate(rows) if keep(r)]
                times, rows = [times[i] for i in picked], [rows[i] for i in picked]
            # Counts and first/last need no field (calls have no `amount`).
            getter = SOURCES[self.source].get(self.field or "amount", _nothing)
            cached = view.memo[key] = _Rows(self.source, times, rows, keep, getter)
        return cached

    def _keep(self) -> Callable[[Any], bool] | None:
        if not self.where:
            return None
        fields = SOURCES[self.source]
        where = self.where
        return lambda r: all(fields[f](r) in allowed for f, allowed in where.items())

    def value(self, facts: CustomerFacts, now: int) -> Any:
        found = self._rows(facts)
        times, rows = found.times, found.rows
        i, j = self.window.span(times, now)
        if self.agg == "count":
            return j - i
        if self.agg in ("first_days_ago", "last_days_ago"):
            if i == j:
                return None
            return (now - (times[i] if self.agg == "first_days_ago" else times[j - 1])) // DAY
        if self.agg == "sum":
            sums = found.sums()
            return round(sums[j] - sums[i], 4)
        getter = found.getter
        values = [v for v in map(getter, rows[i:j]) if v is not None]
        if self.agg == "distinct":
            return len(set(values))
        if not values:
            return None
        if self.agg == "avg":
            return round(sum(values) / len(values), 4)
        return min(values) if self.agg == "min" else max(values)

    def next_flip(
        self, facts: CustomerFacts, now: int, truth: Truth, operands: Sequence[Any]
    ) -> int | None:
        times = self._rows(facts).times
        change = self.window.next_change(times, now)
        if self.agg in ("first_days_ago", "last_days_ago"):
            i, j = self.window.span(times, now)
            if i < j:
                anchor = times[i] if self.agg == "first_days_ago" else times[j - 1]
                age = _age_flip(anchor, (now - anchor) // DAY, truth, operands)
                change = _earliest(change, age)
        return change

    def motion(self, facts: CustomerFacts, at: int) -> list[Any] | None:
        if self.agg not in ("first_days_ago", "last_days_ago"):
            return None  # constant until a fact enters or leaves the window
        times = self._rows(facts).times
        i, j = self.window.span(times, at)
        if i == j:
            return None
        return ["age", times[i] if self.agg == "first_days_ago" else times[j - 1]]


def _nothing(_row: Any) -> None:
    return None


SOURCE_OF_KIND = {"order": "orders", "call": "calls"}


@dataclass(slots=True)
class _Rows:
    """A window feature's rows (time-sorted) and, once asked for, prefix sums of its
    field: a window's sum is two lookups. Grows by a new last order or call."""

    source: str
    times: list[int]
    rows: list[Any]
    keep: Callable[[Any], bool] | None
    getter: Callable[[Any], Any]
    _sums: list[float] | None = None

    def sums(self) -> list[float]:
        if self._sums is None:
            sums = [0.0]
            total = 0.0
            for value in map(self.getter, self.rows):
                if value is not None:
                    total += value
                sums.append(total)
            self._sums = sums
        return self._sums

    def grow(self, kind: str, item: Any) -> bool:
        if SOURCE_OF_KIND.get(kind) != self.source:
            return True  # another source: unchanged
        if self.keep is not None:  # filtered rows are lists of their own
            if not self.keep(item):
                return True
            self.times.append(SOURCE_TIME[kind](item))
            self.rows.append(item)
        # Unfiltered rows are the view's own lists, which already hold the item.
        if self._sums is not None:
            value = self.getter(item)
            self._sums.append(self._sums[-1] + value if value is not None else self._sums[-1])
        return True


SOURCE_TIME: dict[str, Callable[[Any], int]] = {
    "order": lambda o: o.placed_at or 0,
    "call": lambda c: c.started_at,
}


def moved(motion: Sequence[Any], now: int) -> Any:
    """The value a feature's `motion` gives at `now` (see Feature.motion)."""
    if motion[0] == "age":
        return (now - motion[1]) // DAY
    _, value, at, half_life = motion
    return float(value * 2.0 ** (-(now - at) / half_life))


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


# ---- points score with decay ---------------------------------------------


@dataclass(slots=True)
class PointsFeature(Feature):
    """CRM-style lead score: points per fact, halved every `half_life_days`."""

    name: str
    points: dict[str, float]
    half_life_days: float
    description: str = ""

    @property
    def reads(self) -> frozenset[str]:  # type: ignore[override]
        kinds = {key.split(".", 1)[0] for key in self.points}
        return frozenset(POINT_READS[k] for k in kinds if k in POINT_READS)

    @property
    def spec(self) -> PointsSpec:
        return PointsSpec(self.points, self.half_life_days)

    def _past(self, facts: CustomerFacts, now: int) -> float:
        past = facts.past
        return past.score(self.name, self.spec, now) if past is not None else 0.0

    def _events(self, facts: CustomerFacts) -> _Points:
        view = facts.view()
        key = f"points:{self.name}"
        cached = view.memo.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        pts = self.points
        out: list[tuple[int, float]] = []
        if "order" in pts:
            out.extend((t, pts["order"]) for t in view.purchase_times)
        if "refund" in pts:
            out.extend((t, pts["refund"]) for t in view.refund_times)
        for c in view.calls:
            p = pts.get(f"call.{c.outcome}", pts.get("call"))
            if p is not None:
                out.append((c.started_at, p))
        for t in view.touches:
            p = pts.get(f"touch.{t.kind}", pts.get("touch"))
            if p is not None:
                out.append((t.at, p))
        acc = view.memo[key] = _Points(self.points, self.half_life_days * DAY, out)
        return acc

    def _score(self, facts: CustomerFacts, events: _Points, now: int) -> float:
        # Not rounded: decisions and the crossing search must see the same value.
        return float(self._past(facts, now) + events.recent(now))

    def value(self, facts: CustomerFacts, now: int) -> float:
        return self._score(facts, self._events(facts), now)

    def motion(self, facts: CustomerFacts, at: int) -> list[Any] | None:
        events = self._events(facts)
        if events.next_after(at) is not None:
            return None  # a dated fact still to come adds points: not a pure decay
        return ["decay", self._score(facts, events, at), at, self.half_life_days * DAY]

    def next_flip(
        self, facts: CustomerFacts, now: int, truth: Truth, operands: Sequence[Any]
    ) -> int | None:
        events = self._events(facts)
        horizon = events.next_after(now)
        s0 = self._score(facts, events, now)
        now_truth = truth(s0)
        best = horizon
        h = self.half_life_days * DAY
        for x in operands:
            if not isinstance(x, NUMBER) or isinstance(x, bool) or x == 0 or s0 == 0:
                continue
            ratio = s0 / x
            if ratio <= 1:  # decays toward 0: never reaches a threshold beyond it
                continue
            guess = now + math.ceil(h * math.log2(ratio))
            if best is not None and guess >= best:
                continue
            # The score is rounded and floats wobble: find the exact first
            # differing microsecond near the analytic crossing.
            lo, hi = max(now, guess - 2000), guess + 2000
            if truth(self._score(facts, events, hi)) == now_truth:
                continue
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if truth(self._score(facts, events, mid)) == now_truth:
                    lo = mid
                else:
                    hi = mid
            best = hi if best is None else min(best, hi)
        return best


# Beyond this many half-lives between a fact and the reference instant the scaled
# terms could overflow: the score is then summed fact by fact.
MAX_HALF_LIVES = 900.0


@dataclass(slots=True)
class _Points:
    """A points score's facts as terms p * 2^((t - ref) / h), summed exactly (fsum):
    the score at any `now` after every fact is that sum times 2^(-(now - ref) / h),
    one multiplication however long the history. Grows by a new last order or call;
    the sum does not depend on the order facts arrived in."""

    points: dict[str, float]
    h: float
    events: list[tuple[int, float]]
    ref: int = 0
    latest: int | None = None
    terms: list[float] | None = None
    _total: float | None = None

    def __post_init__(self) -> None:
        times = [t for t, _ in self.events]
        self.ref = min(times) if times else 0
        self.latest = max(times) if times else None
        terms = [p * 2.0 ** ((t - self.ref) / self.h) for t, p in self.events if self._fits(t)]
        self.terms = terms if len(terms) == len(self.events) else None

    def _fits(self, t: int) -> bool:
        return abs(t - self.ref) / self.h <= MAX_HALF_LIVES

    def recent(self, now: int) -> float:
        if self.terms is None or (self.latest is not None and self.latest > now):
            h = self.h  # fsum: the same value whatever order the facts arrived in
            return math.fsum(p * 2.0 ** (-(now - t) / h) for t, p in self.events if t <= now)
        if self._total is None:
            self._total = math.fsum(self.terms)
        return self._total * 2.0 ** (-(now - self.ref) / self.h) if self.terms else 0.0

    def next_after(self, now: int) -> int | None:
        """The earliest fact after `now` (it adds points then), if any."""
        if self.latest is None or self.latest <= now:
            return None
        return min(t for t, _ in self.events if t > now)

    def grow(self, kind: str, item: Any) -> bool:
        pts = self.points
        if kind == "order":
            t, p = item.placed_at or 0, pts.get("order")
        else:
            t, p = item.started_at, pts.get(f"call.{item.outcome}", pts.get("call"))
        if p is None:
            return True
        if not self.events or t < self.ref:
            return False  # the reference instant is the earliest fact's: rebuild
        self.events.append((t, p))
        self.latest = t if self.latest is None else max(self.latest, t)
        if self.terms is not None:
            if self._fits(t):
                self.terms.append(p * 2.0 ** ((t - self.ref) / self.h))
            else:
                self.terms = None
        self._total = None
        return True


POINT_READS = {"order": "orders", "refund": "refunds", "call": "calls", "touch": "touches"}


# ---- the built-in catalogue ------------------------------------------------
#
# Lifetime figures add the summary of the past (facts.Past) to the detail.


def _memo(f: CustomerFacts, key: str, compute: Callable[[FactsView], Any]) -> Any:
    """A value derived from the facts, computed once until the facts change."""
    view = f.view()
    try:
        return view.memo[key]
    except KeyError:
        value = view.memo[key] = compute(view)
        return value


def _last_purchase(f: CustomerFacts) -> int | None:
    times = f.view().purchase_times
    if times:
        return times[-1]
    return f.past.last if f.past is not None else None


def _first_purchase(f: CustomerFacts) -> int | None:
    if f.past is not None and f.past.first is not None:
        return f.past.first
    times = f.view().purchase_times
    return times[0] if times else None


def _last_call(f: CustomerFacts) -> int | None:
    times = f.view().call_times
    if times:
        return times[-1]
    past = f.past
    return past.last_call[0] if past is not None and past.last_call is not None else None


def _last_touch(f: CustomerFacts) -> int | None:
    times = f.view().touch_times
    if times:
        return times[-1]
    return f.past.last_touch if f.past is not None else None


def _links_in(state: str) -> Callable[[CustomerFacts], int]:
    return lambda f: sum(1 for s, _ in f.links.values() if s == state)


@dataclass(slots=True)
class _OrderSum:
    """Sum of the purchases' amounts, left to right: a new last order adds to it."""

    total: float

    def grow(self, kind: str, item: Any) -> bool:
        if kind == "order":
            self.total += item.amount
        return True


def _gross(f: CustomerFacts) -> float:
    past = f.past.gross if f.past is not None else 0.0
    found = _memo(f, "gross", lambda v: _OrderSum(sum(o.amount for o in v.purchases)))
    return float(round(past + found.total, 4))


def _refunded(f: CustomerFacts) -> float:
    past = f.past.refunded if f.past is not None else 0.0
    return float(_memo(f, "refunded", lambda v: round(past + sum(v.refund_amounts), 4)))


def _net(f: CustomerFacts) -> float:
    """Purchases minus all refunds; negative when refunds exceed what was kept."""
    return round(_gross(f) - _refunded(f), 4)


def _contribution(f: CustomerFacts) -> float:
    cost = f.attributes.get("service_cost")
    cost = cost if isinstance(cost, NUMBER) and not isinstance(cost, bool) else 0.0
    return round(_net(f) - cost, 4)


@dataclass(slots=True)
class _Intervals:
    """Gaps between consecutive purchases: count, first and last instant, sum of
    squares (days²). A new last order adds one gap."""

    n: int
    first: int | None
    prev: int | None
    sq: float

    def add(self, t: int) -> None:
        if self.prev is not None:
            self.sq += ((t - self.prev) / DAY) ** 2
            self.n += 1
        else:
            self.first = t
        self.prev = t

    def grow(self, kind: str, item: Any) -> bool:
        if kind == "order":
            self.add(item.placed_at or 0)
        return True


def _interval_stats(f: CustomerFacts) -> tuple[int, float, float]:
    """(gaps, sum of gaps, sum of squared gaps) between consecutive purchases, in days."""

    def compute(view: FactsView) -> _Intervals:
        past = f.past
        stats = _Intervals(
            past.purchases - 1 if past is not None and past.purchases else 0,
            past.first if past is not None and past.first is not None else None,
            past.last if past is not None else None,
            past.gap_sq_days if past is not None else 0.0,
        )
        for t in view.purchase_times:
            stats.add(t)
        return stats

    s: _Intervals = _memo(f, "intervals", compute)
    prev, first = s.prev, s.first
    total = (prev - first) / DAY if prev is not None and first is not None else 0.0
    return s.n, total, s.sq


def _interval_cv(f: CustomerFacts) -> float | None:
    n, total, sq = _interval_stats(f)
    if n < 2:
        return None
    mean = total / n
    if mean <= 0:
        return 0.0
    return round(math.sqrt(max(sq / n - mean * mean, 0.0)) / mean, 4)


def _last_outcome(f: CustomerFacts) -> str | None:
    calls = f.view().calls
    if calls:
        return calls[-1].outcome
    past = f.past
    return past.last_call[2] if past is not None and past.last_call is not None else None


def _attr(key: str) -> Callable[[CustomerFacts], Any]:
    return lambda f: f.attributes.get(key)


def _count_orders(f: CustomerFacts) -> int:
    return len(f.view().purchase_times) + (f.past.purchases if f.past is not None else 0)


def _placed_orders(f: CustomerFacts) -> int:
    """Orders ever placed, cancelled ones included: placing one shows interest."""
    past = f.past.orders if f.past is not None else 0
    return past + sum(1 for o in f.orders.values() if o.placed_at is not None)


def kept_orders_feature(period_days: float | None) -> StaticFeature:
    """`kept_orders`: purchases that stand, i.e. not cancelled and (with a cancellation
    period) not refunded in full within it. Orders already folded into the summary of
    the past count as they were summarised (they are older than every window)."""
    period = None if period_days is None else int(period_days * DAY)

    def count(f: CustomerFacts) -> int:
        past = f.past.purchases - f.past.undone if f.past is not None else 0
        return past + sum(1 for o in f.orders.values() if o.counts and not undone(o, period))

    why = "purchases that stand (not cancelled"
    why += ")" if period_days is None else f", not fully refunded within {period_days:g} days)"
    return StaticFeature("kept_orders", count, why, ORDERS)


def _aov(f: CustomerFacts) -> float | None:
    n = _count_orders(f)
    return round(_net(f) / n, 4) if n else None


def _refund_ratio(f: CustomerFacts) -> float:
    gross = _gross(f)
    refunded = _refunded(f)
    if gross == 0:
        return 1.0 if refunded > 0 else 0.0
    return round(refunded / gross, 4)


def _avg_interval(f: CustomerFacts) -> float | None:
    n, total, _ = _interval_stats(f)
    return round(total / n, 2) if n else None


def _max_intent(f: CustomerFacts) -> int | None:
    past = f.past.max_intent if f.past is not None else None
    recent = max((c.intent for c in f.calls.values() if c.intent is not None), default=None)
    if past is None or recent is None:
        return recent if past is None else past
    return max(past, recent)


def _count_calls(outcomes: frozenset[str]) -> Callable[[CustomerFacts], int]:
    def count(f: CustomerFacts) -> int:
        past = sum(f.past.outcomes.get(o, 0) for o in outcomes) if f.past is not None else 0
        return past + sum(1 for c in f.view().calls if c.outcome in outcomes)

    return count


def _call_count(f: CustomerFacts) -> int:
    return len(f.calls) + (f.past.calls if f.past is not None else 0)


def _touch_count(f: CustomerFacts) -> int:
    return len(f.touches) + (f.past.touches if f.past is not None else 0)


def aggregates(f: CustomerFacts) -> dict[str, Any]:
    """Lifetime aggregates stored as columns next to the facts document.

    The same definitions as the features of the same names, so the API's
    aggregates and an explanation's values never disagree.
    """
    first, last, last_call = _first_purchase(f), _last_purchase(f), _last_call(f)
    return {
        "order_count": _count_orders(f),
        "gross_revenue": _gross(f),
        "refunded_amount": _refunded(f),
        "net_revenue": _net(f),
        "first_order_at": from_micros(first) if first is not None else None,
        "last_order_at": from_micros(last) if last is not None else None,
        "call_count": _call_count(f),
        "last_call_at": from_micros(last_call) if last_call is not None else None,
    }


def _reads(*aspects: str) -> frozenset[str]:
    return frozenset(aspects)


ORDERS = _reads("orders")
MONEY = _reads("orders", "refunds")
CALLS = _reads("calls")
CONTACT = _reads("contact")

BUILTINS: dict[str, Feature] = {
    feature.name: feature
    for feature in [
        StaticFeature(
            "order_count", _count_orders, "purchases (placed, not cancelled), lifetime", ORDERS
        ),
        StaticFeature(
            "orders_placed",
            _placed_orders,
            "orders ever placed, cancelled ones included (a sign of interest), lifetime",
            ORDERS,
        ),
        kept_orders_feature(None),
        StaticFeature("gross_revenue", _gross, "purchase amounts, lifetime, base currency", ORDERS),
        StaticFeature("refunded_amount", _refunded, "refunds, lifetime", MONEY),
        StaticFeature("net_revenue", _net, "gross revenue minus refunds (can be negative)", MONEY),
        StaticFeature(
            "contribution",
            _contribution,
            "net revenue minus CRM service cost (profit proxy)",
            MONEY | CONTACT,
        ),
        StaticFeature("refund_ratio", _refund_ratio, "refunded / gross revenue", MONEY),
        StaticFeature("avg_order_value", _aov, "net revenue / purchases", MONEY),
        StaticFeature(
            "avg_purchase_interval_days", _avg_interval, "mean days between purchases", ORDERS
        ),
        StaticFeature(
            "purchase_interval_cv",
            _interval_cv,
            "regularity: std/mean of days between purchases (lower = more regular)",
            ORDERS,
        ),
        AgeFeature("recency_days", _last_purchase, "whole days since the last purchase", ORDERS),
        AgeFeature("tenure_days", _first_purchase, "whole days since the first purchase", ORDERS),
        AgeFeature(
            "customer_age_days",
            lambda f: f.first_seen_at,
            "days since first seen",
            _reads("first_seen"),
        ),
        StaticFeature("call_count", _call_count, "calls, lifetime", CALLS),
        StaticFeature(
            "connected_calls",
            _count_calls(CONNECTED_OUTCOMES),
            "calls that reached the customer, lifetime",
            CALLS,
        ),
        StaticFeature(
            "interested_calls",
            _count_calls(INTERESTED_OUTCOMES),
            "calls with outcome interested, callback_requested or deal_closed",
            CALLS,
        ),
        StaticFeature(
            "deal_closed_calls",
            _count_calls(frozenset({"deal_closed"})),
            "calls with outcome deal_closed, lifetime",
            CALLS,
        ),
        StaticFeature("last_call_outcome", _last_outcome, "outcome of the latest call", CALLS),
        StaticFeature("max_intent", _max_intent, "highest intent seen: 0 none .. 3 high", CALLS),
        AgeFeature("days_since_contact", _last_call, "whole days since the last call", CALLS),
        StaticFeature(
            "deal_stage", lambda f: f.deal_stage, "latest CRM deal stage", _reads("deal")
        ),
        StaticFeature(
            "sales_contacts",
            _links_in(LINK_OPEN),
            "salespeople with an open direct channel to the customer (e.g. added on WeCom)",
            _reads("links"),
        ),
        StaticFeature(
            "contacts_removed_by_customer",
            _links_in("removed_by_customer"),
            "salespeople the customer removed from their contacts (e.g. deleted on WeCom)",
            _reads("links"),
        ),
        StaticFeature(
            "contacts_removed_by_us",
            _links_in("removed_by_us"),
            "salespeople who removed the customer from their contacts",
            _reads("links"),
        ),
        StaticFeature(
            "touchpoint_count",
            _touch_count,
            "CRM follow-ups and contact-channel touch points, lifetime",
            _reads("touches"),
        ),
        AgeFeature(
            "days_since_touchpoint",
            _last_touch,
            "whole days since the last touch point",
            _reads("touches"),
        ),
        StaticFeature(
            "deal_stages_seen",
            lambda f: list(f.deal_stages_seen),
            "all deal stages",
            _reads("deal"),
        ),
        StaticFeature("tags", lambda f: list(f.tags), "CRM tags", CONTACT),
        StaticFeature("industry", _attr("industry"), "CRM industry code or name", CONTACT),
        StaticFeature("employee_count", _attr("employee_count"), "CRM employee count", CONTACT),
        StaticFeature("annual_revenue", _attr("annual_revenue"), "CRM annual revenue", CONTACT),
        StaticFeature("region", _attr("region"), "CRM region", CONTACT),
        StaticFeature("need_type", _attr("need_type"), "CRM/survey need type", CONTACT),
        StaticFeature("satisfaction", _attr("satisfaction"), "latest satisfaction score", CONTACT),
        StaticFeature(
            "service_cost", _attr("service_cost"), "service cost, base currency", CONTACT
        ),
    ]
}


def attribute_feature(name: str, order: Sequence[str] | None = None) -> Feature | None:
    """`attr.<key>` reads any CRM attribute, e.g. attr.key_account (with a source order:
    the value of the most trusted source, see AttributeFeature)."""
    if name.startswith("attr.") and len(name) > 5:
        if order is not None:
            return AttributeFeature(name, name[5:], tuple(order))
        return StaticFeature(name, _attr(name[5:]), f"CRM attribute {name[5:]!r}", CONTACT)
    return None


# The built-in features that are CRM attributes read as they are.
ATTRIBUTE_FEATURES = (
    "industry", "employee_count", "annual_revenue", "region", "need_type", "satisfaction",
    "service_cost",
)  # fmt: skip


class AttributeFeature(StaticFeature):
    """A CRM attribute by source precedence: the value of the first source in `order`
    that gave one, then the most recent of the others (`source_of` names it)."""

    def __init__(self, name: str, key: str, order: tuple[str, ...]) -> None:
        described = f"CRM attribute {key!r}, by source: {', '.join(order) or 'most recent'}"
        super().__init__(name, lambda f: f.attribute(key, order)[0], described, CONTACT)
        self.key = key
        self.order = order

    def source_of(self, facts: CustomerFacts) -> str | None:
        return facts.attribute(self.key, self.order)[1]
