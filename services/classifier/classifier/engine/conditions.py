"""The rule condition language, compiled once per scheme version. Pure, no eval.

A condition is a mapping:

    {all: [c, ...]}  {any: [c, ...]}  {not: c}
    {feature: NAME, OP: OPERAND}   with OP one of
        eq ne lt lte gt gte            (scalar)
        in not_in                      (list)
        between                        ([low, high], inclusive)
        exists                         (true / false: the value is known)
        contains                       (a list feature, e.g. tags, holds the value)

A comparison against an unknown value (None) is false, except `exists: false`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from classifier.engine.facts import NUMBER, CustomerFacts
from classifier.engine.features import AttributeFeature, Feature, StaticFeature

SCALAR_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}
OP_SYMBOLS = {
    "eq": "=",
    "ne": "!=",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "in": "in",
    "not_in": "not in",
    "between": "between",
    "exists": "exists",
    "contains": "contains",
}
ALL_OPS = frozenset(OP_SYMBOLS)


class ConditionError(ValueError):
    """A condition is malformed; `path` says where, relative to the condition."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


_MISSING: Any = object()


class EvalContext:
    """Feature values of one customer at one instant, computed at most once each."""

    __slots__ = ("_cache", "_flips", "facts", "features", "now")

    def __init__(self, facts: CustomerFacts, now: int, features: Mapping[str, Feature]) -> None:
        self.facts = facts
        self.now = now
        self.features = features
        self._cache: dict[str, Any] = {}
        self._flips: dict[str, int | None] = {}

    def value(self, name: str) -> Any:
        v = self._cache.get(name, _MISSING)
        if v is _MISSING:
            v = self._cache[name] = self.features[name].value(self.facts, self.now)
        return v

    def next_flip(
        self, name: str, truth: Callable[[Any], object], operands: list[Any]
    ) -> int | None:
        feature = self.features[name]
        if not feature.flip_depends_on_test:
            # The next change of the value itself: the same for every comparison.
            flip = self._flips.get(name, _MISSING)
            if flip is _MISSING:
                flip = self._flips[name] = feature.next_flip(self.facts, self.now, truth, operands)
            return cast(int | None, flip)
        return feature.next_flip(self.facts, self.now, truth, operands)


class Condition:
    # False when no feature in the condition moves with time: its next flip is
    # None without asking the features (the common case, and a hot path).
    timed: bool = True

    def test(self, ctx: EvalContext) -> bool:
        raise NotImplementedError

    def next_flip(self, ctx: EvalContext) -> int | None:
        """Earliest instant > now at which this condition may change; None if never."""
        raise NotImplementedError

    def checks(self, ctx: EvalContext) -> list[dict[str, Any]]:
        """The comparisons made, with the values seen, for explanations."""
        raise NotImplementedError

    def describe(self, ctx: EvalContext) -> str:
        raise NotImplementedError


def source_of(ctx: EvalContext, name: str) -> str | None:
    """The source a CRM attribute's value came from (attribute precedence), else None."""
    feature = ctx.features[name]
    return feature.source_of(ctx.facts) if isinstance(feature, AttributeFeature) else None


@dataclass(slots=True)
class Comparison(Condition):
    feature: str
    op: str
    operand: Any
    truth: Callable[[Any], bool]
    timed: bool = True

    def test(self, ctx: EvalContext) -> bool:
        return self.truth(ctx.value(self.feature))

    def next_flip(self, ctx: EvalContext) -> int | None:
        if not self.timed:
            return None
        operands = self.operand if isinstance(self.operand, list) else [self.operand]
        return ctx.next_flip(self.feature, self.truth, operands)

    def checks(self, ctx: EvalContext) -> list[dict[str, Any]]:
        actual = ctx.value(self.feature)
        check = {
            "feature": self.feature,
            "op": self.op,
            "expected": self.operand,
            "actual": actual,
            "result": self.truth(actual),
        }
        source = source_of(ctx, self.feature)
        if source is not None:
            check["source"] = source
        return [check]

    def describe(self, ctx: EvalContext) -> str:
        source = source_of(ctx, self.feature)
        return (
            f"{self.feature} = {ctx.value(self.feature)!r}"
            + (f" (from {source})" if source is not None else "")
            + f" {OP_SYMBOLS[self.op]} {self.operand!r}"
        )


@dataclass(slots=True)
class AllOf(Condition):
    parts: list[Condition]
    timed: bool = True

    def __post_init__(self) -> None:
        self.timed = any(p.timed for p in self.parts)

    def test(self, ctx: EvalContext) -> bool:
        for p in self.parts:  # noqa: SIM110 (a loop, not all(...): a hot path)
            if not p.test(ctx):
                return False
        return True

    def next_flip(self, ctx: EvalContext) -> int | None:
        if not self.timed:
            return None
        earliest: int | None = None
        for p in self.parts:
            if p.timed:
                flip = p.next_flip(ctx)
                if flip is not None and (earliest is None or flip < earliest):
                    earliest = flip
        return earliest

    def checks(self, ctx: EvalContext) -> list[dict[str, Any]]:
        return [c for p in self.parts for c in p.checks(ctx)]

    def describe(self, ctx: EvalContext) -> str:
        return "(" + " and ".join(p.describe(ctx) for p in self.parts) + ")"


@dataclass(slots=True)
class AnyOf(AllOf):
    def test(self, ctx: EvalContext) -> bool:
        for p in self.parts:  # noqa: SIM110 (a hot path)
            if p.test(ctx):
                return True
        return False

    def describe(self, ctx: EvalContext) -> str:
        return "(" + " or ".join(p.describe(ctx) for p in self.parts) + ")"


@dataclass(slots=True)
class Not(Condition):
    part: Condition
    timed: bool = True

    def __post_init__(self) -> None:
        self.timed = self.part.timed

    def test(self, ctx: EvalContext) -> bool:
        return not self.part.test(ctx)

    def next_flip(self, ctx: EvalContext) -> int | None:
        return self.part.next_flip(ctx)

    def checks(self, ctx: EvalContext) -> list[dict[str, Any]]:
        return [{**c, "negated": True} for c in self.part.checks(ctx)]

    def describe(self, ctx: EvalContext) -> str:
        return f"not {self.part.describe(ctx)}"


class Always(Condition):
    timed = False

    def test(self, ctx: EvalContext) -> bool:
        return True

    def next_flip(self, ctx: EvalContext) -> int | None:
        return None

    def checks(self, ctx: EvalContext) -> list[dict[str, Any]]:
        return []

    def describe(self, ctx: EvalContext) -> str:
        return "always"


def _is_number(x: Any) -> bool:
    return isinstance(x, NUMBER) and not isinstance(x, bool)


def make_truth(op: str, operand: Any, path: str) -> Callable[[Any], bool]:
    """Build the predicate for one comparison, validating its operand."""
    if op in SCALAR_OPS:
        if isinstance(operand, list | dict) or operand is None:
            raise ConditionError(path, f"'{op}' needs a single number or string")
        fn = SCALAR_OPS[op]
        if op in ("eq", "ne"):
            return lambda v: v is not None and fn(v, operand)
        if _is_number(operand):
            numeric = (int, float)
            return lambda v: v.__class__ in numeric and fn(v, operand)
        return lambda v: isinstance(v, str) and fn(v, operand)
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or not operand:
            raise ConditionError(path, f"'{op}' needs a non-empty list")
        allowed = frozenset(operand)
        if op == "in":
            return lambda v: v is not None and v in allowed
        return lambda v: v is not None and v not in allowed
    if op == "between":
        if not (isinstance(operand, list) and len(operand) == 2 and all(map(_is_number, operand))):
            raise ConditionError(path, "'between' needs [low, high] numbers")
        lo, hi = operand
        if lo > hi:
            raise ConditionError(path, f"'between' low {lo} is above high {hi}")
        return lambda v: v is not None and _is_number(v) and lo <= v <= hi
    if op == "exists":
        if not isinstance(operand, bool):
            raise ConditionError(path, "'exists' needs true or false")
        return (
            (lambda v: v is not None and v != []) if operand else (lambda v: v is None or v == [])
        )
    if op == "contains":
        return lambda v: isinstance(v, list) and operand in v
    raise ConditionError(path, f"unknown operator '{op}' (use one of {', '.join(sorted(ALL_OPS))})")


def compile_condition(raw: Any, path: str, resolve: Callable[[str], Feature | None]) -> Condition:
    """Compile a condition mapping; raises ConditionError naming the path."""
    if raw is None or raw is True:
        return Always()
    if not isinstance(raw, dict) or not raw:
        raise ConditionError(path, "a condition must be a mapping (all/any/not/feature)")
    if "all" in raw or "any" in raw:
        key = "all" if "all" in raw else "any"
        if len(raw) != 1:
            raise ConditionError(path, f"'{key}' must stand alone in its mapping")
        items = raw[key]
        if not isinstance(items, list) or not items:
            raise ConditionError(f"{path}.{key}", "needs a non-empty list of conditions")
        parts = [compile_condition(c, f"{path}.{key}[{i}]", resolve) for i, c in enumerate(items)]
        return AllOf(parts) if key == "all" else AnyOf(parts)
    if "not" in raw:
        if len(raw) != 1:
            raise ConditionError(path, "'not' must stand alone in its mapping")
        return Not(compile_condition(raw["not"], f"{path}.not", resolve))
    if "feature" not in raw:
        raise ConditionError(
            path, f"unknown condition keys {sorted(raw)}; expected all/any/not/feature"
        )
    name = raw["feature"]
    if not isinstance(name, str) or resolve(name) is None:
        raise ConditionError(path, f"unknown feature {name!r}")
    ops = [k for k in raw if k != "feature"]
    if len(ops) != 1:
        raise ConditionError(path, "a comparison needs exactly one operator besides 'feature'")
    op = ops[0]
    feature = resolve(name)
    return Comparison(
        name,
        op,
        raw[op],
        make_truth(op, raw[op], path),
        timed=not isinstance(feature, StaticFeature),
    )
