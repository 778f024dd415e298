"""The pure classification engine: schemes, features, evaluation. No I/O."""

from __future__ import annotations

from importlib.resources import files

from classifier.engine.evaluate import ClassResult, Evaluation, Override, PriorClass, evaluate
from classifier.engine.facts import CustomerFacts, from_micros, to_micros
from classifier.engine.population import compute_cutoffs, rank_dimensions
from classifier.engine.scheme import CompiledScheme, SchemeError, parse_scheme

__all__ = [
    "ClassResult",
    "CompiledScheme",
    "CustomerFacts",
    "Evaluation",
    "Override",
    "PriorClass",
    "SchemeError",
    "compute_cutoffs",
    "default_scheme_text",
    "evaluate",
    "from_micros",
    "parse_scheme",
    "rank_dimensions",
    "to_micros",
]


def default_scheme_text() -> str:
    """The YAML of the default scheme shipped with the product."""
    return files("classifier.engine").joinpath("default_scheme.yaml").read_text(encoding="utf-8")
