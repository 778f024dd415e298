"""Classification schemes: parse (YAML or JSON), validate with paths, compile. Pure.

A scheme is data: a version, derived features, and per dimension an ordered
list of classes (best first) plus exactly one way to pick a class:

- `rules`: ordered, first match wins, each `{class, when, name?, allow_backward?}`;
- `score`: bands on a numeric feature, `{feature, bands: [{class, min}], margin?}`;
- `rank`: population rank on a feature, `{feature, method: pareto|percentile,
  shares: {CLASS: cumulative share}}`; the cut-offs are computed elsewhere
  (see population.py) and passed to evaluation;
- `map`: attribute mapping, `{feature, values: {raw: class}}` or `{feature, bands}`.

Options per dimension: `default` class and `default_summary` (what the default
means, for its explanation), `forward_only` (never moves to a worse class while
the evidence for the better one stands: a hold resting on an order that was
undone, cancelled or refunded in full within the scheme's
`cancellation_period_days`, is released), `min_dwell_days` (hysteresis before
moving to a worse class), `ordered` (false: the classes are kinds, not a
ladder, so no class is "better"), `label` (e.g. the Chinese term).

A rule or band names its class `class` (`cls` is accepted too, for schemes
written against older documents; the API emits `class`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from classifier.engine.conditions import Condition, ConditionError, compile_condition
from classifier.engine.facts import ALL_ASPECTS, PointsSpec, points_spec_key
from classifier.engine.features import (
    AGGREGATES,
    ATTRIBUTE_FEATURES,
    BUILTINS,
    DAY,
    SOURCES,
    AttributeFeature,
    Feature,
    PointsFeature,
    StaticFeature,
    Window,
    WindowFeature,
    attribute_feature,
    kept_orders_feature,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
CLASS_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"


class SchemeError(ValueError):
    """A scheme failed validation; `errors` holds one `path: problem` line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Model):
    last_days: float | None = Field(default=None, gt=0)
    from_days: float | None = Field(default=None, gt=0)
    to_days: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> WindowSpec:
        if (self.last_days is None) == (self.from_days is None):
            raise ValueError("give either last_days, or from_days with to_days")
        if self.from_days is not None and (self.to_days or 0) >= self.from_days:
            raise ValueError("to_days must be less than from_days")
        return self

    def to_window(self) -> Window:
        if self.last_days is not None:
            return Window(self.last_days, 0.0)
        return Window(self.from_days or 0.0, self.to_days or 0.0)


class WindowFeatureSpec(_Model):
    source: Literal["orders", "refunds", "calls", "touchpoints"]
    agg: Literal["count", "sum", "avg", "min", "max", "distinct", "first_days_ago", "last_days_ago"]
    field: str | None = None
    window: WindowSpec
    where: dict[str, list[Any]] | None = None
    description: str = ""


class PointsFeatureSpec(_Model):
    points: dict[str, float]
    half_life_days: float = Field(gt=0)
    description: str = ""


def _feature_kind(raw: Any) -> str:
    if isinstance(raw, dict):
        return "points_feature" if "points" in raw else "window_feature"
    return "points_feature" if isinstance(raw, PointsFeatureSpec) else "window_feature"


FEATURE_TAGS = frozenset({"points_feature", "window_feature"})
FeatureSpec = Annotated[
    Annotated[WindowFeatureSpec, Tag("window_feature")]
    | Annotated[PointsFeatureSpec, Tag("points_feature")],
    Discriminator(_feature_kind),
]


CONDITION_MARK = "x-condition"  # replaced by a $ref in scheme_json_schema()
_SCALAR = {"type": ["number", "string", "boolean"]}
CONDITION_JSON_SCHEMA: dict[str, Any] = {
    "description": "all / any / not, or one comparison {feature, OP: operand}; null = always",
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["all"],
            "additionalProperties": False,
            "properties": {
                "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Condition"}}
            },
        },
        {
            "type": "object",
            "required": ["any"],
            "additionalProperties": False,
            "properties": {
                "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Condition"}}
            },
        },
        {
            "type": "object",
            "required": ["not"],
            "additionalProperties": False,
            "properties": {"not": {"$ref": "#/$defs/Condition"}},
        },
        {
            "type": "object",
            "required": ["feature"],
            "additionalProperties": False,
            "minProperties": 2,
            "maxProperties": 2,
            "properties": {
                "feature": {"type": "string"},
                **dict.fromkeys(("eq", "ne", "lt", "lte", "gt", "gte", "contains"), _SCALAR),
                "in": {"type": "array", "minItems": 1, "items": _SCALAR},
                "not_in": {"type": "array", "minItems": 1, "items": _SCALAR},
                "between": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "exists": {"type": "boolean"},
            },
        },
    ],
}


class Rule(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cls: str = Field(alias="class")
    when: Annotated[Any, WithJsonSchema({CONDITION_MARK: True})] = None
    name: str | None = None
    label: str | None = Field(
        default=None, description="What the rule means, for people (e.g. in Chinese)."
    )
    allow_backward: bool = False


class Band(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cls: str = Field(alias="class")
    min: float | None = None


class ScoreSpec(_Model):
    feature: str
    bands: list[Band] = Field(min_length=1)
    margin: float = Field(default=0, ge=0)


class RankSpec(_Model):
    feature: str
    method: Literal["pareto", "percentile"] = "pareto"
    shares: dict[str, float]


class MapSpec(_Model):
    feature: str
    values: dict[str, str] | None = None
    bands: list[Band] | None = None
    case_insensitive: bool = True

    @model_validator(mode="after")
    def _one_form(self) -> MapSpec:
        if (self.values is None) == (self.bands is None):
            raise ValueError("give either values or bands")
        return self


class DimensionSpec(_Model):
    label: str | None = None
    description: str | None = None
    classes: list[str] = Field(min_length=1)
    default: str | None = None
    default_summary: str | None = Field(
        default=None, description="What the default class means here, for its explanation."
    )
    ordered: bool = Field(
        default=True,
        description="False when the classes are kinds, not a ladder (industry, size): no "
        "class is better than another, and a class answer's `next` says so.",
    )
    forward_only: bool = False
    min_dwell_days: float = Field(default=0, ge=0)
    rules: list[Rule] | None = None
    score: ScoreSpec | None = None
    rank: RankSpec | None = None
    map: MapSpec | None = None


class SchemeSpec(_Model):
    version: int = Field(ge=1)
    name: str = "scheme"
    description: str | None = None
    cancellation_period_days: float | None = Field(
        default=None,
        ge=0,
        description="An order refunded in full within this many days of being placed is "
        "treated as undone, like a cancelled one (feature kept_orders; forward-only holds).",
    )
    attribute_sources: dict[str, list[str]] | None = Field(
        default=None,
        description="CRM attribute precedence: per attribute (or '*' for every other), the "
        "envelope sources in order of trust (e.g. crm/fxiaoke before crm/hubspot); a value "
        "comes from the first source that gave one, then the most recent of the others. "
        "Without it the most recent write wins.",
    )
    next_moves: bool = Field(
        default=True,
        description="Work out `next` (what it would take to reach a better class) and "
        "`changes_at` with every explanation. Each costs the worker an evaluation or two "
        "of the dimension whenever an explanation is rebuilt; false leaves both null.",
    )
    key_features: list[str] = Field(default_factory=list)
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    dimensions: dict[str, DimensionSpec] = Field(min_length=1)


# ---- compiled form ---------------------------------------------------------


@dataclass(slots=True)
class CompiledRule:
    cls: str
    name: str
    when: Condition
    allow_backward: bool
    label: str | None = None


@dataclass(slots=True)
class CompiledDimension:
    name: str
    spec: DimensionSpec
    kind: Literal["rules", "score", "rank", "map"]
    classes: list[str]
    default: str | None
    rules: list[CompiledRule] = field(default_factory=list)
    lookup: Callable[[Any], str | None] | None = None  # map.values, built once
    timed_feature: bool = True  # score/rank/map: does their feature move with time?
    # The aspects of the facts its features read (the dependency graph: a fact
    # that changes none of them cannot change this dimension's class).
    reads: frozenset[str] = ALL_ASPECTS
    # A digest of its definition and of the features it reads: a class stored
    # under another scheme version with the same digest is still that
    # dimension's class (see `carries`).
    fingerprint: str = ""
    # Per current class, the features `next_move` reads (next_move.basis), worked
    # out on first use.
    basis_names: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def carries(self) -> bool:
        """True when a class computed under another version with the same fingerprint
        holds under this one. Not for ranks: their cut-offs belong to one version."""
        return self.kind != "rank"

    def rank_of(self, cls: str) -> int:
        """0 for the best class; larger is worse."""
        return self.classes.index(cls)


@dataclass(slots=True)
class CompiledScheme:
    spec: SchemeSpec
    features: dict[str, Feature]
    dimensions: dict[str, CompiledDimension]
    # Key features plus every feature a population rank is computed on (set once).
    stored_features: tuple[str, ...] = field(init=False)
    # How far back any window reaches (µs): facts older than that, as seen from
    # the latest evaluation, are kept only in the summary of the past.
    horizon: int = field(init=False)
    points: dict[str, PointsSpec] = field(init=False)
    points_key: str = field(init=False)
    # The cancellation period (µs) after which a full refund no longer undoes an order.
    cancellation_period: int | None = field(init=False)

    def __post_init__(self) -> None:
        names = list(self.spec.key_features)
        for dim in self.dimensions.values():
            if dim.spec.rank is not None and dim.spec.rank.feature not in names:
                names.append(dim.spec.rank.feature)
        self.stored_features = tuple(names)
        windows = [f.window.leave for f in self.features.values() if isinstance(f, WindowFeature)]
        self.horizon = max(windows, default=0)
        self.points = {
            name: f.spec for name, f in self.features.items() if isinstance(f, PointsFeature)
        }
        days = self.spec.cancellation_period_days
        self.cancellation_period = None if days is None else int(days * DAY)
        # The summary of the past counts undone purchases under this period too.
        self.points_key = points_spec_key(self.points, self.cancellation_period)

    def dimensions_reading(self, aspects: frozenset[str]) -> list[str]:
        """The dimensions whose class a change of these aspects may change."""
        return [name for name, dim in self.dimensions.items() if dim.reads & aspects]

    @property
    def version(self) -> int:
        return self.spec.version


def scheme_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the scheme format."""

    def link(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get(CONDITION_MARK):
                return {"$ref": "#/$defs/Condition"}
            return {k: link(v) for k, v in node.items()}
        if isinstance(node, list):
            return [link(v) for v in node]
        return node

    schema: dict[str, Any] = link(SchemeSpec.model_json_schema(by_alias=True))
    schema.setdefault("$defs", {})["Condition"] = CONDITION_JSON_SCHEMA
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Customer classification scheme"
    return schema


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part in FEATURE_TAGS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def load_scheme_text(text: str) -> Any:
    """Parse YAML or JSON text into plain data; raises SchemeError when unreadable."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SchemeError([f"(root): not valid YAML or JSON: {exc}"]) from exc
    except RecursionError as exc:
        raise SchemeError([f"(root): nested deeper than {MAX_SCHEME_NESTING} levels"]) from exc
    if _depth(data) > MAX_SCHEME_NESTING:
        raise SchemeError([f"(root): nested deeper than {MAX_SCHEME_NESTING} levels"])
    return data


MAX_SCHEME_NESTING = 64


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_SCHEME_NESTING:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def parse_scheme(raw: Any) -> CompiledScheme:
    """Validate and compile scheme data; raises SchemeError listing every problem."""
    if isinstance(raw, str):
        raw = load_scheme_text(raw)
    try:
        spec = SchemeSpec.model_validate(raw)
    except ValidationError as exc:
        raise SchemeError(
            [f"{_format_loc(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        ) from exc
    return compile_scheme(spec)


def _compile_features(spec: SchemeSpec, errors: list[str]) -> dict[str, Feature]:
    features: dict[str, Feature] = dict(BUILTINS)
    if spec.attribute_sources is not None:
        for name in ATTRIBUTE_FEATURES:
            features[name] = AttributeFeature(name, name, _source_order(spec, name))
    if spec.cancellation_period_days is not None:
        features["kept_orders"] = kept_orders_feature(spec.cancellation_period_days)
    for name, fs in spec.features.items():
        path = f"features.{name}"
        if name in BUILTINS:
            errors.append(f"{path}: shadows the built-in feature {name!r}")
            continue
        if isinstance(fs, PointsFeatureSpec):
            features[name] = PointsFeature(name, dict(fs.points), fs.half_life_days, fs.description)
            continue
        fields = SOURCES[fs.source]
        if fs.agg not in AGGREGATES:
            errors.append(f"{path}.agg: unknown aggregate {fs.agg!r}")
        if fs.field is not None and fs.field not in fields:
            errors.append(
                f"{path}.field: {fs.source} have no field {fs.field!r} "
                f"(use one of {', '.join(sorted(fields))})"
            )
        for key in fs.where or {}:
            if key not in fields:
                errors.append(f"{path}.where: {fs.source} have no field {key!r}")
        where = {k: frozenset(v) for k, v in (fs.where or {}).items()}
        features[name] = WindowFeature(
            name, fs.source, fs.agg, fs.window.to_window(), fs.field, where or None, fs.description
        )
    return features


def _source_order(spec: SchemeSpec, key: str) -> tuple[str, ...]:
    sources = spec.attribute_sources or {}
    return tuple(sources.get(key, sources.get("*", [])))


def _fingerprint(spec: SchemeSpec, dim: DimensionSpec, used: set[str]) -> str:
    """A digest of a dimension's definition and of the definitions of the features it
    reads (built-in ones by name: their meaning is code)."""
    reads: dict[str, Any] = {
        name: spec.features[name].model_dump(mode="json") if name in spec.features else "builtin"
        for name in sorted(used)
    }
    if "kept_orders" in reads and spec.cancellation_period_days is not None:
        reads["kept_orders"] = spec.cancellation_period_days
    for name in reads:
        key = name.removeprefix("attr.")
        if spec.attribute_sources is not None and (key in ATTRIBUTE_FEATURES or key != name):
            reads[name] = ["sources", *_source_order(spec, key)]
    definition = dim.model_dump(mode="json", by_alias=True)
    for wording in ("default_summary", "ordered"):  # they change no class
        definition.pop(wording, None)
    document = json.dumps([definition, reads], sort_keys=True, default=str)
    return hashlib.sha1(document.encode(), usedforsecurity=False).hexdigest()[:16]


def _map_lookup(spec: MapSpec) -> Callable[[Any], str | None]:
    fold = spec.case_insensitive
    table = {(k.lower() if fold else k): v for k, v in (spec.values or {}).items()}

    def lookup(value: Any) -> str | None:
        if value is None:
            return None
        return table.get(str(value).lower() if fold else str(value))

    return lookup


def _check_class(cls: str, dim: DimensionSpec, path: str, errors: list[str]) -> None:
    if cls not in dim.classes:
        errors.append(f"{path}: unknown class {cls!r} (classes: {', '.join(dim.classes)})")


def compile_scheme(spec: SchemeSpec) -> CompiledScheme:
    """Check cross-references and compile conditions once for this version."""
    errors: list[str] = []
    features = _compile_features(spec, errors)

    def resolve(name: str) -> Feature | None:
        order = None
        if spec.attribute_sources is not None and name.startswith("attr."):
            order = _source_order(spec, name[5:])
        found = features.get(name) or attribute_feature(name, order)
        if found is not None and name not in features:
            features[name] = found
        return found

    dims: dict[str, CompiledDimension] = {}
    used: set[str] = set()

    def resolve_used(name: str) -> Feature | None:
        used.add(name)
        return resolve(name)

    for dname, dim in spec.dimensions.items():
        path = f"dimensions.{dname}"
        used.clear()
        if len(set(dim.classes)) != len(dim.classes):
            errors.append(f"{path}.classes: classes must be unique")
        kinds = [k for k in ("rules", "score", "rank", "map") if getattr(dim, k) is not None]
        if len(kinds) != 1:
            errors.append(
                f"{path}: give exactly one of rules, score, rank, map (got {kinds or 'none'})"
            )
            continue
        kind = kinds[0]
        if dim.default is not None:
            _check_class(dim.default, dim, f"{path}.default", errors)
        compiled = CompiledDimension(dname, dim, kind, list(dim.classes), dim.default)  # type: ignore[arg-type]
        if dim.rules is not None:
            for i, rule in enumerate(dim.rules):
                rpath = f"{path}.rules[{i}]"
                _check_class(rule.cls, dim, f"{rpath}.class", errors)
                try:
                    cond = compile_condition(rule.when, f"{rpath}.when", resolve_used)
                except ConditionError as exc:
                    errors.append(f"{exc.path}: {exc.message}")
                    continue
                compiled.rules.append(
                    CompiledRule(
                        rule.cls, rule.name or f"rules[{i}]", cond, rule.allow_backward, rule.label
                    )
                )
            if dim.default is None and not any(r.when is None for r in dim.rules):
                errors.append(f"{path}.default: needed unless a rule without 'when' ends the list")
        for sub in ("score", "rank", "map"):
            sp = getattr(dim, sub)
            if sp is None:
                continue
            feature = resolve_used(sp.feature)
            if feature is None:
                errors.append(f"{path}.{sub}.feature: unknown feature {sp.feature!r}")
            compiled.timed_feature = not isinstance(feature, StaticFeature)
            if sub == "map" and sp.values is not None:
                compiled.lookup = _map_lookup(sp)
            for i, band in enumerate(getattr(sp, "bands", None) or []):
                _check_class(band.cls, dim, f"{path}.{sub}.bands[{i}].class", errors)
            for raw, cls in (getattr(sp, "values", None) or {}).items():
                _check_class(cls, dim, f"{path}.{sub}.values.{raw}", errors)
            if sub == "rank":
                for cls, share in sp.shares.items():
                    _check_class(cls, dim, f"{path}.rank.shares.{cls}", errors)
                    if not 0 < share <= 1:
                        errors.append(f"{path}.rank.shares.{cls}: share must be in (0, 1]")
        compiled.reads = frozenset().union(*(features[n].reads for n in used if n in features))
        compiled.fingerprint = _fingerprint(spec, dim, used)
        dims[dname] = compiled
    for i, name in enumerate(spec.key_features):
        if resolve(name) is None:
            errors.append(f"key_features[{i}]: unknown feature {name!r}")
    if errors:
        raise SchemeError(errors)
    return CompiledScheme(spec, features, dims)
