"""Scheme validation: every problem is reported with its path."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from classifier.engine import SchemeError, default_scheme_text, parse_scheme


def scheme(**dimension: Any) -> dict[str, Any]:
    return {"version": 3, "dimensions": {"loyalty": {"classes": ["high", "low"], **dimension}}}


def errors_of(raw: Any) -> list[str]:
    with pytest.raises(SchemeError) as caught:
        parse_scheme(raw)
    return caught.value.errors


def test_unknown_feature_names_the_path() -> None:
    raw = scheme(
        default="low",
        rules=[
            {"class": "high", "when": {"feature": "order_count", "gte": 3}},
            {"class": "high", "when": {"feature": "tenure_days", "gte": 3}},
            {"class": "low", "when": {"feature": "recncy_days", "lte": 30}},
        ],
    )

    assert errors_of(raw) == ["dimensions.loyalty.rules[2].when: unknown feature 'recncy_days'"]


def test_nested_condition_errors_point_inside() -> None:
    raw = scheme(
        default="low",
        rules=[
            {
                "class": "high",
                "when": {
                    "all": [
                        {"feature": "order_count", "gte": 1},
                        {"any": [{"feature": "order_count", "approx": 3}]},
                    ]
                },
            }
        ],
    )

    [error] = errors_of(raw)
    assert error.startswith(
        "dimensions.loyalty.rules[0].when.all[1].any[0]: unknown operator 'approx'"
    )


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        ({"default": "gold", "rules": []}, "dimensions.loyalty.default: unknown class 'gold'"),
        (
            {"default": "low", "rules": [{"class": "mid"}]},
            "dimensions.loyalty.rules[0].class: unknown class 'mid'",
        ),
        (
            {"rules": [{"class": "high", "when": {"feature": "order_count", "gt": 1}}]},
            "dimensions.loyalty.default: needed unless a rule without 'when' ends the list",
        ),
        ({"default": "low"}, "dimensions.loyalty: give exactly one of rules, score, rank, map"),
        (
            {
                "default": "low",
                "rules": [{"class": "high", "when": {"feature": "order_count", "between": [5, 1]}}],
            },
            "dimensions.loyalty.rules[0].when: 'between' low 5 is above high 1",
        ),
        (
            {
                "default": "low",
                "rules": [{"class": "high", "when": {"feature": "order_count", "in": []}}],
            },
            "dimensions.loyalty.rules[0].when: 'in' needs a non-empty list",
        ),
        (
            {
                "default": "low",
                "score": {"feature": "lead_scor", "bands": [{"class": "high", "min": 1}]},
            },
            "dimensions.loyalty.score.feature: unknown feature 'lead_scor'",
        ),
        (
            {"default": "low", "rank": {"feature": "net_revenue", "shares": {"high": 1.5}}},
            "dimensions.loyalty.rank.shares.high: share must be in (0, 1]",
        ),
    ],
)
def test_each_problem_is_named(dimension: dict[str, Any], expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(scheme(**dimension))), expected


def test_structural_errors_come_with_paths() -> None:
    raw = {"version": 0, "dimensions": {"x": {"classes": [], "colour": "red"}}}

    errors = errors_of(raw)

    assert any(e.startswith("version:") for e in errors)
    assert any(e.startswith("dimensions.x.classes:") for e in errors)
    assert any(e.startswith("dimensions.x.colour:") for e in errors)


def test_window_feature_needs_a_known_field() -> None:
    raw = scheme(default="low", rules=[])
    raw["features"] = {
        "spend": {"source": "orders", "agg": "sum", "field": "price", "window": {"last_days": 30}},
    }

    [error] = errors_of(raw)

    assert error.startswith("features.spend.field: orders have no field 'price'")


def test_window_feature_needs_one_window_form() -> None:
    raw = scheme(default="low", rules=[])
    raw["features"] = {
        "odd": {"source": "orders", "agg": "count", "window": {"last_days": 30, "from_days": 60}},
    }

    [error] = errors_of(raw)

    assert error.startswith("features.odd.window: Value error, give either last_days")


def test_a_feature_may_not_shadow_a_builtin() -> None:
    raw = scheme(default="low", rules=[])
    raw["features"] = {
        "order_count": {"source": "orders", "agg": "count", "window": {"last_days": 30}}
    }

    assert errors_of(raw) == ["features.order_count: shadows the built-in feature 'order_count'"]


def test_unreadable_text_is_an_error() -> None:
    assert errors_of("version: [1,\n")[0].startswith("(root): not valid YAML or JSON")


def test_the_default_scheme_is_valid_in_yaml_and_as_json() -> None:
    from_yaml = parse_scheme(default_scheme_text())
    as_json = json.dumps(yaml.safe_load(default_scheme_text()), ensure_ascii=False)
    from_json = parse_scheme(as_json)

    assert set(from_yaml.dimensions) == {
        "abc_tier",
        "value",
        "purchase_behavior",
        "loyalty",
        "lifecycle_stage",
        "relationship",
        "industry",
        "company_size",
        "need_type",
    }
    assert from_json.spec == from_yaml.spec
