"""The router's work per event with no Kafka at all: what one core could route if the broker and the client cost
nothing. Compare its rate with the baseline row of `hub_bench.py` (a plain consume → transform → produce loop).

    .venv/bin/python bench/router_floor.py [--passes 7]

It times, over the labelled development set's 359 events (all 47 matters, five channels), each step the router
takes for an event that opens a case (merging on, as deployed): parse the event, decide, merge features and
signature, build the tasks, serialise them. CPU time (`time.process_time`), best of `--passes` passes per step,
so other processes on the machine inflate it less than wall time would.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas import EventNormalised
from schemas.dutylist import load_duty_list
from services.router.decide import decide
from services.router.evaluation import dev_event, load_devset
from services.router.merging import report_features
from services.router.signature import TextRules
from services.router.tasks import build_tasks


def best_us(step: Callable[[], Any], n: int, passes: int) -> float:
    """Best CPU µs per item of `step` (which handles n items) over `passes` runs."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        step()
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def main() -> None:
    """Print the per-step CPU cost of routing one event and the rate one core could reach on it alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()
    duty = load_duty_list()
    rules = TextRules.load()
    events = [dev_event(row) for row in load_devset()]
    raw = [e.to_bytes() for e in events]
    now = datetime.now(UTC)
    decisions = [decide(e, duty) for e in events]
    tasks = [build_tasks(e, d, duty, now) for e, d in zip(events, decisions, strict=True)]
    n = len(events)

    def features() -> None:
        for e, d in zip(events, decisions, strict=True):
            report_features(
                e,
                matter_code=d.matter.code if d.matter else None,
                matter_name=d.matter.name if d.matter else None,
                grid_code=d.grid.code if d.grid else None,
                rules=rules,
            )

    steps = {
        "parse the event (pydantic, JSON)": lambda: [EventNormalised.model_validate_json(b) for b in raw],
        "decide (classify, territory, units)": lambda: [decide(e, duty) for e in events],
        "merge features and signature": features,
        "build the tasks": lambda: [build_tasks(e, d, duty, now) for e, d in zip(events, decisions, strict=True)],
        "serialise the tasks": lambda: [t.to_bytes() for ts in tasks for t in ts],
    }
    per_task = sum(map(len, tasks)) / n
    print(
        f"router work per event, no Kafka: {n} dev-set events, {per_task:.2f} tasks/event, "
        f"CPU µs, best of {args.passes}"
    )
    total = 0.0
    for name, step in steps.items():
        us = best_us(step, n, args.passes)
        total += us
        print(f"  {name:40s} {us:7.1f} µs")
    print(f"  {'total':40s} {total:7.1f} µs  → at most {1e6 / total:,.0f} events/s on one core before any Kafka work")


if __name__ == "__main__":
    main()
