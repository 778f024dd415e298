"""`python -m bench.engine`: customer evaluations per second on one core, default scheme.

Three figures from the same facts in the same run, each the median of
several rounds:
- full: facts loaded from their stored JSON document and evaluated (what
  the worker does for every event: views rebuilt, all 9 dimensions,
  explanations and next_review_at);
- warm: evaluation again on facts whose sorted views are already built;
- floor: a hand-written Python function that derives just recency and
  order count from the same documents and picks purchase_behavior: the
  least work any classification must do, so the ratio shows the cost of a
  general, explained, nine-dimension engine over it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.generate import population
from classifier.engine import CustomerFacts, default_scheme_text, evaluate, parse_scheme, to_micros

DAY = 86_400_000_000


def _floor_classify(doc: dict[str, Any], now: int) -> str:
    times = [o[0] for o in doc["orders"].values() if o[0] is not None and not o[3]]
    if not times:
        return "potential"
    recency = (now - max(times)) // DAY
    recent = sum(1 for t in times if t > now - 365 * DAY)
    if recent >= 4 and recency <= 90:
        return "regular"
    return "occasional" if recency < 365 else "churned"


def _rate(fn: Callable[[], None], count: int, rounds: int) -> float:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def run(customers: int, rounds: int, seed: int) -> dict[str, Any]:
    scheme = parse_scheme(default_scheme_text())
    now_dt = datetime(2026, 11, 1, tzinfo=UTC)
    now = to_micros(now_dt)
    docs = []
    for cid, events in population(seed, customers, now_dt):
        facts = CustomerFacts(cid)
        for event in events:
            facts.apply(event)
        docs.append((cid, facts.to_doc()))
    warm = [CustomerFacts.from_doc(cid, doc) for cid, doc in docs]

    def full() -> None:
        for cid, doc in docs:
            evaluate(scheme, CustomerFacts.from_doc(cid, doc), now)

    def warm_run() -> None:
        for facts in warm:
            evaluate(scheme, facts, now)

    def floor() -> None:
        for _, doc in docs:
            _floor_classify(doc, now)

    warm_run()  # build the views once
    full_rate = _rate(full, customers, rounds)
    warm_rate = _rate(warm_run, customers, rounds)
    floor_rate = _rate(floor, customers, rounds)
    return {
        "benchmark": "engine",
        "cores": os.cpu_count(),
        "customers": customers,
        "rounds": rounds,
        "seed": seed,
        "dimensions": len(scheme.dimensions),
        "avg_orders_per_customer": round(statistics.fmean(len(d["orders"]) for _, d in docs), 2),
        "full_evals_per_s": round(full_rate),
        "warm_evals_per_s": round(warm_rate),
        "floor_per_s": round(floor_rate),
        "full_vs_floor": round(full_rate / floor_rate, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = run(args.customers, args.rounds, args.seed)
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")  # noqa: T201 - a command-line tool
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
