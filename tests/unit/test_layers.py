"""The code's layering: imports point down, never up, and packages form no cycle.

engine (pure) <- processing (apply to the database) <- consumer, scheduler,
jobs (drivers) <- worker, cli, app (wiring). schemes sits beside processing:
processing reads the active scheme, schemes never reaches into processing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "services" / "classifier" / "classifier"


def imports_of(part: str) -> set[str]:
    """classifier.* modules imported anywhere in this package (or module)."""
    base = PACKAGE / part
    files = list(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("classifier.")}


def top(module: str) -> str:
    return module.split(".")[1]


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("engine", {"processing", "consumer", "schemes", "scheduler", "jobs", "worker", "app"}),
        ("processing", {"consumer", "scheduler", "jobs", "worker", "app", "cli"}),
        ("schemes", {"processing", "consumer", "scheduler", "worker", "app", "cli"}),
        ("consumer", {"scheduler", "jobs", "worker", "app", "cli"}),
    ],
)
def test_imports_point_down(part: str, forbidden: set[str]) -> None:
    up = sorted(m for m in imports_of(part) if top(m) in forbidden)
    assert not up, f"classifier.{part} imports {up}"
