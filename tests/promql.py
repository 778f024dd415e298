"""Metric names in PromQL expressions, and the names a /metrics page exports."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

# Words of PromQL that look like metric names but are not.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "bool", "offset", "inf", "nan", "atan2"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects (functions, keywords, labels left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        before = expr[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent of 1e3
            continue
        if expr[match.end() :].lstrip().startswith("("):  # a function call
            continue
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def exported_names(page: str) -> set[str]:
    """Series names a /metrics page can produce, whether or not a labelled child exists yet."""
    names = set()
    for family in text_string_to_metric_families(page):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names
