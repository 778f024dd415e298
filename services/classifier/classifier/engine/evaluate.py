"""Evaluate a compiled scheme for one customer at one instant, with explanations. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from classifier.engine.conditions import Condition, EvalContext, source_of
from classifier.engine.facts import NUMBER, CustomerFacts, OrderFact, undone
from classifier.engine.features import DAY
from classifier.engine.next_move import Move, apply_move, basis, changes_at, next_move
from classifier.engine.scheme import Band, CompiledDimension, CompiledScheme


@dataclass(frozen=True, slots=True)
class PriorClass:
    """The class a customer holds now in one dimension, and since when (epoch µs)."""

    cls: str
    since: int


@dataclass(frozen=True, slots=True)
class Override:
    """A manual class that wins until it expires (epoch µs; None = no expiry)."""

    cls: str
    expires_at: int | None = None
    reason: str = ""


def overrides_from(stored: Mapping[str, Mapping[str, Any]]) -> dict[str, Override]:
    """Manual classes as stored per customer ({dimension: {"class", "expires_at", "reason"}})."""
    return {
        dim: Override(o["class"], o.get("expires_at"), o.get("reason", ""))
        for dim, o in stored.items()
    }


@dataclass(slots=True)
class ClassResult:
    """One dimension's class; the explanation text is built only when read."""

    dimension: str
    cls: str
    rule: str
    checks: list[dict[str, Any]]
    _explain: Callable[[], dict[str, Any]] = field(repr=False, compare=False)
    _explanation: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _basis: Callable[[], list[Any]] | None = field(default=None, repr=False, compare=False)
    # The contexts the explanation is built in (see `keep_facts`).
    _views: Outlooks | None = field(default=None, repr=False, compare=False)

    @property
    def explanation(self) -> dict[str, Any]:
        """Why this class (`summary`, `checks`), with `next` (the nearest better class and
        the smallest change reaching it) and `changes_at` (when it changes by itself)."""
        if self._explanation is None:
            self._explanation = self._explain()
        return self._explanation

    def keep_facts(self, live: CustomerFacts, kept: CustomerFacts) -> None:
        """Build the explanation, when it is built, on `kept` (a snapshot of `live` as
        this evaluation saw it) rather than on `live`, which is about to change."""
        if self._views is not None:
            self._views.keep_facts(live, kept)

    @property
    def basis(self) -> list[Any]:
        """The values `next` was computed from (an explanation with the same class, rule,
        checks and basis says the same)."""
        return self._basis() if self._basis is not None else []


@dataclass(slots=True)
class Evaluation:
    classes: dict[str, ClassResult]
    next_review_at: int | None
    _ctx: EvalContext
    _stored: tuple[str, ...]
    # Per evaluated dimension: the next instant its class may change (None: never).
    flips: dict[str, int | None] = field(default_factory=dict)
    _features: dict[str, Any] | None = None

    @property
    def features(self) -> dict[str, Any]:
        """The scheme's stored features at the evaluation's instant, computed on first use.

        A worker evaluates a customer at every event and due instant of a batch
        but stores only the last evaluation's features: the earlier ones are
        never computed. Read them before the facts change again.
        """
        if self._features is None:
            self._features = {name: self._ctx.value(name) for name in self._stored}
        return self._features


@dataclass(slots=True)
class _Candidate:
    cls: str
    rule: str
    summary: str | Callable[[], str]  # a callable is called only if an explanation is built
    checks: list[dict[str, Any]]
    flip: int | None
    allow_backward: bool = False
    label: str | None = None
    when: Condition | None = None  # the matched rule's condition

    def text(self) -> str:
        return self.summary if isinstance(self.summary, str) else self.summary()


def _earliest(*flips: int | None) -> int | None:
    known = [f for f in flips if f is not None]
    return min(known) if known else None


def _fallback(dim: CompiledDimension, flip: int | None, why: str) -> _Candidate:
    cls = dim.default if dim.default is not None else dim.classes[-1]
    meaning = dim.spec.default_summary
    return _Candidate(cls, "default", f"{why}: {meaning}" if meaning else why, [], flip)


def _by_rules(
    dim: CompiledDimension, ctx: EvalContext, timed: bool = True, brief: bool = False
) -> _Candidate:
    flip: int | None = None
    for rule in dim.rules:
        # Any rule before the match, and the match itself, can change the outcome.
        if timed:
            flip = _earliest(flip, rule.when.next_flip(ctx))
        if rule.when.test(ctx):
            when = rule.when
            return _Candidate(
                rule.cls,
                rule.name,
                partial(when.describe, ctx),
                [] if brief else when.checks(ctx),
                flip,
                rule.allow_backward,
                rule.label,
                when,
            )
    return _fallback(dim, flip, "no rule matched")


def _band_picker(bands: list[Band]) -> Callable[[Any], int]:
    def pick(value: Any) -> int:
        for i, band in enumerate(bands):
            if band.min is None or (
                isinstance(value, NUMBER) and not isinstance(value, bool) and value >= band.min
            ):
                return i
        return -1

    return pick


def _by_bands(
    dim: CompiledDimension,
    ctx: EvalContext,
    feature: str,
    bands: list[Band],
    prior: PriorClass | None,
    margin: float = 0.0,
) -> _Candidate:
    value = ctx.value(feature)
    pick = _band_picker(bands)
    flip = (
        ctx.next_flip(feature, pick, [b.min for b in bands if b.min is not None])
        if dim.timed_feature
        else None
    )
    idx = pick(value)
    check = {"feature": feature, "actual": value}
    source = source_of(ctx, feature)
    if source is not None:
        check["source"] = source
    if margin and prior is not None and value is not None:
        # Hysteresis: keep a better prior band while within `margin` below its minimum.
        for band in bands:
            if (
                band.cls == prior.cls
                and band.min is not None
                and idx >= 0
                and dim.rank_of(bands[idx].cls) > dim.rank_of(prior.cls)
                and value >= band.min - margin
            ):
                return _Candidate(
                    band.cls,
                    "margin",
                    f"{feature} = {value!r} is within margin "
                    f"{margin} of {band.cls} (min {band.min})",
                    [check],
                    flip,
                )
    if idx < 0:
        return _fallback(dim, flip, f"{feature} = {value!r} is below every band")
    band = bands[idx]
    summary = f"{feature} = {value!r} >= {band.min}" if band.min is not None else "catch-all band"
    return _Candidate(
        band.cls,
        f"band:{band.cls}",
        summary,
        [{**check, "op": "gte", "expected": band.min, "result": True}],
        flip,
    )


def _by_map(dim: CompiledDimension, ctx: EvalContext, prior: PriorClass | None) -> _Candidate:
    spec = dim.spec.map
    assert spec is not None
    if spec.bands is not None:
        return _by_bands(dim, ctx, spec.feature, spec.bands, prior)
    lookup = dim.lookup
    assert lookup is not None
    value = ctx.value(spec.feature)
    flip = ctx.next_flip(spec.feature, lookup, []) if dim.timed_feature else None
    cls = lookup(value)
    source = source_of(ctx, spec.feature)
    given = f" (from {source})" if source is not None else ""
    if cls is None:
        return _fallback(dim, flip, f"{spec.feature} = {value!r}{given} is not in the mapping")
    check = {"feature": spec.feature, "op": "map", "actual": value, "result": True}
    if source is not None:
        check["source"] = source
    return _Candidate(
        cls, f"map:{value}", f"{spec.feature} = {value!r}{given} maps to {cls}", [check], flip
    )


def _by_rank(
    dim: CompiledDimension, ctx: EvalContext, cutoffs: Mapping[str, Mapping[str, float]]
) -> _Candidate:
    spec = dim.spec.rank
    assert spec is not None
    cuts = cutoffs.get(dim.name)
    if not cuts:
        return _fallback(dim, None, "population cut-offs not computed yet")
    ordered = [(cls, cuts[cls]) for cls in dim.classes if cls in cuts]

    def pick(value: Any) -> str | None:
        if not isinstance(value, NUMBER) or value <= 0:
            return None
        return next((cls for cls, cut in ordered if value >= cut), None)

    value = ctx.value(spec.feature)
    flip = ctx.next_flip(spec.feature, pick, [c for _, c in ordered]) if dim.timed_feature else None
    cls = pick(value)
    if cls is None:
        return _fallback(
            dim, flip, f"{spec.feature} = {value!r} is below every {spec.method} cut-off"
        )
    return _Candidate(
        cls,
        f"{spec.method}:{cls}",
        f"{spec.feature} = {value!r} >= {spec.method} cut-off {cuts[cls]} for {cls}",
        [
            {
                "feature": spec.feature,
                "op": "gte",
                "expected": cuts[cls],
                "actual": value,
                "result": True,
            }
        ],
        flip,
    )


def _candidate(
    dim: CompiledDimension,
    ctx: EvalContext,
    prior: PriorClass | None,
    cutoffs: Mapping[str, Mapping[str, float]],
    timed: bool = True,
    brief: bool = False,
) -> _Candidate:
    if dim.kind == "rules":
        return _by_rules(dim, ctx, timed, brief)
    if dim.kind == "score":
        spec = dim.spec.score
        assert spec is not None
        return _by_bands(dim, ctx, spec.feature, spec.bands, prior, spec.margin)
    if dim.kind == "map":
        return _by_map(dim, ctx, prior)
    return _by_rank(dim, ctx, cutoffs)


def _rests_on_undone_orders(
    dim: CompiledDimension,
    ctx: EvalContext,
    prior: PriorClass,
    cutoffs: Mapping[str, Mapping[str, float]],
    period: int | None,
) -> bool:
    """True when a forward-only hold of `prior` would rest on a mistake that was undone:
    the customer has cancelled (or, within the period, fully refunded) orders, and with
    them standing the rules would reach `prior` or better. Real evidence keeps the hold."""
    facts = ctx.facts
    gone = [o for o in facts.orders.values() if undone(o, period)]
    if not gone:
        return False
    restored = dict(facts.orders)
    for o in gone:
        restored[o.order_id] = OrderFact(o.order_id, o.placed_at, o.amount, o.status)
    as_placed = replace(facts, orders=restored, _view=None, _order_docs=None, _call_docs=None)
    cand = _candidate(dim, EvalContext(as_placed, ctx.now, ctx.features), prior, cutoffs)
    return cand.cls in dim.classes and dim.rank_of(cand.cls) <= dim.rank_of(prior.cls)


def _decide(
    dim: CompiledDimension,
    ctx: EvalContext,
    prior: PriorClass | None,
    cutoffs: Mapping[str, Mapping[str, float]],
    period: int | None,
    timed: bool,
    brief: bool = False,
) -> tuple[_Candidate, str, int | None, str | None, bool]:
    """The class rules pick and the one held (forward-only, dwell): (candidate, class,
    next flip, what keeps the prior class or None, whether a forward-only hold was
    released). `brief`: the candidate carries no checks (only the class is wanted)."""
    cand = _candidate(dim, ctx, prior, cutoffs, timed, brief)
    flip = cand.flip
    kept_by = None
    released = False
    if (
        prior is not None
        and prior.cls in dim.classes
        and cand.cls in dim.classes
        and dim.rank_of(cand.cls) > dim.rank_of(prior.cls)
    ):
        if dim.spec.forward_only and not cand.allow_backward:
            released = _rests_on_undone_orders(dim, ctx, prior, cutoffs, period)
            kept_by = None if released else "forward_only"
        elif dim.spec.min_dwell_days and ctx.now < prior.since + int(dim.spec.min_dwell_days * DAY):
            kept_by = "min_dwell"
            flip = _earliest(flip, prior.since + int(dim.spec.min_dwell_days * DAY))
    cls = prior.cls if kept_by and prior is not None else cand.cls
    return cand, cls, flip, kept_by, released


def evaluate_dimension(
    dim: CompiledDimension,
    ctx: EvalContext,
    *,
    prior: PriorClass | None = None,
    override: Override | None = None,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
    period: int | None = None,
    outlooks: Outlooks | None = None,
    timed: bool = True,
) -> tuple[ClassResult, int | None]:
    """Pick one class for one dimension; returns it with its next flip instant.

    `period` is the scheme's cancellation period (µs): an order refunded in full
    within it counts as undone when a forward-only hold is weighed. `timed=False` skips
    working out the next flip of a rules dimension (None then)."""
    now = ctx.now
    if override is not None and (override.expires_at is None or override.expires_at > now):
        explanation: dict[str, Any] = {
            "kind": "override",
            "rule": "override",
            "reason": override.reason,
            "summary": f"manual override to {override.cls}",
            "checks": [],
            "expires_at": override.expires_at,
            "next": None,
            "changes_at": None,
        }
        result = ClassResult(dim.name, override.cls, "override", [], lambda: explanation)
        return result, override.expires_at
    cand, cls, flip, kept_by, released = _decide(dim, ctx, prior, cutoffs or {}, period, timed)

    def explain() -> dict[str, Any]:
        explanation: dict[str, Any] = {
            "kind": dim.kind,
            "rule": cand.rule,
            "summary": cand.text(),
            "checks": cand.checks,
            "features": {c["feature"]: c["actual"] for c in cand.checks},
        }
        if cand.label:
            explanation["label"] = cand.label
        if released:
            explanation["released"] = "forward_only"
            explanation["summary"] = (
                f"{explanation['summary']} (not held at {prior.cls if prior else None}: "
                "the order that reached it was cancelled or refunded in full)"
            )
        if kept_by:
            explanation["kept_by"] = kept_by
            explanation["would_be"] = cand.cls
            explanation["summary"] = (
                f"stays {cls} ({kept_by}); rules say {cand.cls}: {explanation['summary']}"
            )
        # The class changes by itself where what holds it stops holding: the matched
        # rule's condition; a forward-only hold never lets go by itself.
        hold = flip
        if kept_by == "forward_only":
            hold = None
        elif cand.when is not None and not kept_by:
            hold = cand.when.next_flip(ctx)
        explanation["next"], explanation["changes_at"] = _outlook(
            dim, views.ctx, cls, hold, prior, cutoffs or {}, period, views
        )
        explanation["basis"] = basis_of()
        return explanation

    def basis_of() -> list[Any]:
        return basis(dim, ctx, cls, (cutoffs or {}).get(dim.name, {}))

    rule = kept_by if kept_by else cand.rule
    views = outlooks if outlooks is not None else Outlooks(ctx)
    return ClassResult(dim.name, cls, rule, cand.checks, explain, None, basis_of, views), flip


class Outlooks:
    """Contexts `next` and `changes_at` evaluate in, shared by the dimensions of one
    evaluation: a later instant, or a change made now, is set up once and its
    feature values computed once for all of them."""

    __slots__ = ("_contexts", "ctx", "enabled")

    def __init__(self, ctx: EvalContext, enabled: bool = True) -> None:
        self.ctx = ctx
        self.enabled = enabled
        self._contexts: dict[tuple[int, Move | None], EvalContext] = {(ctx.now, None): ctx}

    def keep_facts(self, live: CustomerFacts, kept: CustomerFacts) -> None:
        """Contexts on `live` read `kept` from now on (see ClassResult.keep_facts)."""
        for ctx in self._contexts.values():
            if ctx.facts is live:
                ctx.facts = kept

    def context(self, instant: int, move: Move | None) -> EvalContext:
        key = (instant, move)
        found = self._contexts.get(key)
        if found is None:
            ctx = self.ctx
            facts = (
                ctx.facts if move is None else apply_move(ctx.facts, move, instant, ctx.features)
            )
            found = self._contexts[key] = EvalContext(facts, instant, ctx.features)
        return found


def _outlook(
    dim: CompiledDimension,
    ctx: EvalContext,
    cls: str,
    flip: int | None,
    prior: PriorClass | None,
    cutoffs: Mapping[str, Mapping[str, float]],
    period: int | None,
    outlooks: Outlooks | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """`next` and `changes_at` of a class just picked (see next_move.py)."""
    if outlooks is not None and not outlooks.enabled:
        return None, None
    held = PriorClass(cls, prior.since if prior is not None and prior.cls == cls else ctx.now)
    views = outlooks if outlooks is not None else Outlooks(ctx)

    def at(instant: int, move: Move | None = None, timed: bool = True) -> tuple[str, int | None]:
        _, cls, following, _, _ = _decide(
            dim, views.context(instant, move), held, cutoffs, period, timed, brief=True
        )
        return cls, following

    return (
        next_move(dim, ctx, cls, lambda m, i: at(i, m, timed=False)[0], cutoffs.get(dim.name, {})),
        changes_at(ctx, cls, flip, at),
    )


def evaluate(
    scheme: CompiledScheme,
    facts: CustomerFacts,
    now: int,
    *,
    previous: Mapping[str, PriorClass] | None = None,
    overrides: Mapping[str, Override] | None = None,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
    only: Iterable[str] | None = None,
) -> Evaluation:
    """Classify one customer at `now` (epoch µs), in every dimension or `only` these."""
    ctx = EvalContext(facts, now, scheme.features)
    outlooks = Outlooks(ctx, scheme.spec.next_moves)
    previous = previous or {}
    overrides = overrides or {}
    classes: dict[str, ClassResult] = {}
    flips: dict[str, int | None] = {}
    review: int | None = None
    for name in scheme.dimensions if only is None else only:
        result, flip = evaluate_dimension(
            scheme.dimensions[name],
            ctx,
            prior=previous.get(name),
            override=overrides.get(name),
            cutoffs=cutoffs,
            period=scheme.cancellation_period,
            outlooks=outlooks,
        )
        classes[name] = result
        if flip is not None and flip > now:
            flips[name] = flip
            if review is None or flip < review:
                review = flip
        else:
            flips[name] = None
    return Evaluation(classes, review, ctx, scheme.stored_features, flips)
