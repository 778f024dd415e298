"""Population-relative cut-offs (ABC by revenue share, percentiles). Pure.

The worker gathers one value per customer and calls `compute_cutoffs`; the
result is passed to `evaluate` so each customer is classified against the
whole population without evaluation ever looking at other customers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from classifier.engine.scheme import CompiledDimension, CompiledScheme


def compute_cutoffs(dim: CompiledDimension, values: Iterable[float]) -> dict[str, float]:
    """Return the minimum value per class (best first) for a `rank` dimension.

    pareto: class X holds the smallest set of top customers whose cumulative
    value reaches share[X] of the total (A at 0.8: the few that bring 80%).
    percentile: class X holds the top share[X] fraction of customers.
    Only positive values take part; customers at or below zero get the last class.
    """
    spec = dim.spec.rank
    assert spec is not None
    ranked = sorted((v for v in values if v > 0), reverse=True)
    if not ranked:
        return {}
    cutoffs: dict[str, float] = {}
    total = sum(ranked)
    for cls in dim.classes:
        share = spec.shares.get(cls)
        if share is None:
            continue
        if spec.method == "pareto":
            running = 0.0
            cut = ranked[-1]
            for v in ranked:
                running += v
                if running >= share * total - 1e-9:
                    cut = v
                    break
        else:
            index = max(math.ceil(share * len(ranked)) - 1, 0)
            cut = ranked[min(index, len(ranked) - 1)]
        cutoffs[cls] = round(cut, 4)
    return cutoffs


def rank_dimensions(scheme: CompiledScheme) -> list[CompiledDimension]:
    """The dimensions whose classes depend on the population."""
    return [d for d in scheme.dimensions.values() if d.kind == "rank"]
