"""GridHub bench: a raw aiokafka baseline, each Faust stage alone, and the whole hub end to end, on one broker.

Run: .venv/bin/python bench/hub_bench.py [--events N] [--quick] [--json PATH]   (see bench/README.md)
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also under `python -m bench.hub_bench`

from baseline import run_baseline
from e2e import run_e2e
from harness import Bench, Plan, Row, delete_topics_with_prefix, log
from http_intake import run_http
from stages import build_corpus, run_stage

from gridhub.broker import EmbeddedBroker
from gridhub.kernel.runtime import run as run_on_loop
from gridhub.kernel.settings import CommonSettings
from schemas import Channel
from schemas.catalogue import RAW_TOPICS


async def run_all(bench: Bench, parts: set[str]) -> list[Row]:
    """Every part of the bench in order; a failing part is reported and the rest still run."""
    rows: list[Row] = []
    corpus = build_corpus(bench.plan.events, bench.run_id)
    n_events, n_tasks = len(corpus.events), len(corpus.tasks)
    tasks_per_event = n_tasks / max(1, n_events)
    log.info(
        "corpus: %d reports, %d events, %d tasks (%.2f/event)", len(corpus.raws), n_events, n_tasks, tasks_per_event
    )
    jobs: list[tuple[str, Callable[[], Awaitable[Row | list[Row]]]]] = [
        ("baseline", lambda: run_baseline(bench)),
        (
            "intake",
            lambda: run_stage(
                bench,
                "intake",
                RAW_TOPICS[Channel.HOTLINE_12345],
                corpus.raws,
                "events.normalised",
                n_events,
                "ReportReceived",
            ),
        ),
        (
            "router",
            lambda: run_stage(
                bench,
                "router",
                "events.normalised",
                corpus.router_events,
                "tasks.dispatched",
                corpus.router_tasks,
                "EventNormalised",
            ),
        ),
        (
            # As deployed: case merging on. Each event ends as tasks or as a link to an open case.
            "router+merge",
            lambda: run_stage(
                bench,
                "router",
                "events.normalised",
                corpus.router_events,
                "tasks.dispatched",
                len(corpus.router_events),
                "EventNormalised",
                name="router+merge",
                env_extra={"GRIDHUB_ROUTER_MERGE_ENABLED": "true"},
                more_outputs=("cases.links",),
                count_events=True,
            ),
        ),
        (
            "sla",
            lambda: run_stage(
                bench,
                "sla",
                "tasks.dispatched",
                corpus.tasks,
                "tasks.status",
                n_tasks,
                "TaskDispatched",
                1 / tasks_per_event,
            ),
        ),
        (
            "notifier",
            lambda: run_stage(
                bench,
                "notifier",
                "tasks.dispatched",
                corpus.tasks,
                "deliveries.results",
                n_tasks,
                "TaskDispatched",
                1 / tasks_per_event,
            ),
        ),
        ("e2e", lambda: run_e2e(bench)),
        ("http", lambda: run_http(bench)),
    ]
    for name, job in jobs:
        if name not in parts:
            continue
        started = time.monotonic()
        log.info("running %s ...", name)
        try:
            result = await job()
        except Exception as exc:
            log.exception("%s failed", name)
            rows.append(Row(name, 0, "", None, note=f"FAILED: {exc!r}"[:200]))
            continue
        rows.extend(result if isinstance(result, list) else [result])
        log.info("%s done in %.1f s", name, time.monotonic() - started)
    return rows


def format_table(rows: list[Row], baseline: float | None) -> str:
    """The result table, each rate also as a multiple of the baseline."""

    def num(value: float | None, unit: str = "/s") -> str:
        return "–" if value is None else f"{value:,.0f}{unit}"

    header = f"{'part':<14}{'inputs':>24}{'in rate':>11}{'out rate':>11}{'×base':>8}{'startup':>9}{'cpu':>6}  notes"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "–"
        if baseline and r.in_rate:
            x = r.in_rate / baseline
            ratio = f"{x:.2f}×" if x >= 0.1 else f"{x:.3f}×"
        startup = "–" if r.startup_s is None else f"{r.startup_s:.1f} s"
        cpu = "–" if r.cpu_pct is None else f"{r.cpu_pct:.0f}%"
        inputs = f"{r.inputs:,} {r.input_kind}" if r.inputs else ""
        lines.append(
            f"{r.name:<14}{inputs:>24}{num(r.in_rate):>11}{num(r.out_rate):>11}{ratio:>8}{startup:>9}{cpu:>6}  {r.note}"
        )
        if r.extra.get("cpu_pct"):
            shares = ", ".join(f"{k} {v}%" for k, v in sorted(r.extra["cpu_pct"].items(), key=lambda kv: -kv[1]))
            lines.append(f"{'':<14}CPU during it (of one core): {shares}")
        if r.extra.get("cpu_ms_per_event"):
            per = sorted(r.extra["cpu_ms_per_event"].items(), key=lambda kv: -kv[1])
            lines.append(f"{'':<14}CPU per event delivered (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in per))
        if r.extra.get("idle_cpu_pct") and r.name == "e2e max":
            idle = sorted(r.extra["idle_cpu_pct"].items(), key=lambda kv: -kv[1])
            lines.append(
                f"{'':<14}CPU idle, before the runs (of one core): " + ", ".join(f"{k} {v:.0f}%" for k, v in idle)
            )
    return "\n".join(lines)


E2E_RATE_TARGET = 2000.0  # events/s sustained, HTTP accept → webhook receipt
E2E_P99_TARGET_MS = 300.0  # at 500 events/s


def e2e_verdict(rows: list[Row], plan: Plan) -> str:
    """The end-to-end figures against the operations targets, one line each (empty without e2e rows)."""
    lines = []
    tops = [r for r in rows if r.name.startswith("e2e max") and r.in_rate]
    if tops:
        best = max(tops, key=lambda r: r.in_rate or 0.0)
        met = "met" if (best.in_rate or 0.0) >= E2E_RATE_TARGET else "NOT met"
        lines.append(
            f"target sustained ≥ {E2E_RATE_TARGET:,.0f} events/s: {met} (best {best.in_rate:,.0f}/s, {best.name}; "
            f"{best.extra.get('received', 0):,} received in {best.extra.get('window_s', 0.0):,.1f} s)"
        )
    fixed = next((r for r in rows if r.name == f"e2e @{plan.latency_rate:g}/s"), None)
    if fixed is not None and "p99_ms" in fixed.extra:
        offered = fixed.extra["achieved_rate"] >= 0.95 * plan.latency_rate
        ok = offered and fixed.extra["p99_ms"] <= E2E_P99_TARGET_MS and fixed.extra["received"] == fixed.extra["sent"]
        lines.append(
            f"target p99 ≤ {E2E_P99_TARGET_MS:,.0f} ms at {plan.latency_rate:g}/s: {'met' if ok else 'NOT met'} "
            f"(p50 {fixed.extra['p50_ms']:,.0f} ms, p99 {fixed.extra['p99_ms']:,.0f} ms, 202 → first webhook; "
            f"POSTs at {fixed.extra['achieved_rate']:,.0f}/s{'' if offered else ', offered rate not reached'})"
        )
    if lines:
        lines.insert(0, f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return "\n".join(lines)


def make_plan(args: argparse.Namespace) -> Plan:
    """Sizes from --quick and the explicit options."""
    quick = args.quick
    events = args.events or (1000 if quick else 3000)
    return Plan(
        events=events,
        baseline_events=args.baseline_events or (10_000 if quick else 30_000),
        e2e_events=args.e2e_events or events,
        concurrency=args.concurrency,
        latency_rate=args.rate,
        latency_seconds=args.seconds or (4.0 if quick else 10.0),
        half_max_latency=not args.no_half_max,
        e2e_batch=args.e2e_batch,
        startup_timeout_s=60.0,
        stall_timeout_s=10.0 if quick else 15.0,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="GridHub throughput/latency bench on one broker (see bench/README.md).")
    p.add_argument("--events", type=int, default=None, help="Reports preloaded per stage (default 3000, quick 1000).")
    p.add_argument("--quick", action="store_true", help="Smaller sizes (about 1.5 minutes).")
    p.add_argument("--baseline-events", type=int, default=None, help="Baseline messages (30000, quick 10000).")
    p.add_argument("--e2e-events", type=int, default=None, help="Work orders for the max-rate run (= --events).")
    p.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight for the max-rate run.")
    p.add_argument(
        "--e2e-batch",
        type=int,
        default=100,
        help="Also run e2e max through the batch route with this many orders per POST (0 or 1: skip).",
    )
    p.add_argument("--rate", type=float, default=500.0, help="Work orders per second for the latency run.")
    p.add_argument("--seconds", type=float, default=None, help="Length of the latency run (10, quick 4).")
    p.add_argument("--no-half-max", action="store_true", help="Skip the latency run at half the max rate.")
    p.add_argument(
        "--only", default="baseline,intake,router,router+merge,sla,notifier,e2e,http", help="Comma-separated parts."
    )
    p.add_argument("--json", type=Path, default=None, help="Also write the results as JSON to this path.")
    p.add_argument("--keep", action="store_true", help="Keep the work dir (service logs) even on success.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start (or use) the broker, run the bench, print the table, stop every process started."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = make_plan(args)
    load_at_start = os.getloadavg()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="gridhub-bench-"))
    broker: EmbeddedBroker | None = None
    bench: Bench | None = None
    ok = False
    started = time.monotonic()
    try:
        external = os.environ.get("KAFKA_BOOTSTRAP") or os.environ.get("GRIDHUB_KAFKA_BOOTSTRAP")
        if external:
            bootstrap = external
            idempotence = os.environ.get("GRIDHUB_KAFKA_IDEMPOTENCE", "true").lower() != "false"
        else:
            broker = EmbeddedBroker(log_path=workdir / "broker.log")
            bootstrap, idempotence = broker.start(), False  # Tansu has no InitProducerId
        # The bench's own clients read CommonSettings from the environment too.
        os.environ["KAFKA_BOOTSTRAP"] = bootstrap
        os.environ["GRIDHUB_KAFKA_IDEMPOTENCE"] = "true" if idempotence else "false"
        bench = Bench(bootstrap, idempotence, workdir, plan, broker.pid if broker else None)
        log.info(
            "run %s on %s broker %s; work dir %s",
            bench.run_id,
            "external" if external else "embedded Tansu",
            bootstrap,
            workdir,
        )
        # The bench's own loop (baseline, load, readers) is the services' loop: uvloop unless GRIDHUB_EVENT_LOOP says.
        rows = run_on_loop(run_all(bench, parts), CommonSettings())
        if external:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics_with_prefix(bootstrap, bench.prefix_root))
        base = next((r.in_rate for r in rows if r.name == "baseline"), None)
        elapsed = time.monotonic() - started
        print(
            f"\nGridHub bench  run {bench.run_id}  broker {'external' if external else 'embedded Tansu'} "
            f"{bootstrap}  cpus {os.cpu_count()}  {elapsed:.0f} s  "
            f"load average at start {load_at_start[0]:.2f}, at end {os.getloadavg()[0]:.2f}\n"
        )
        print(format_table(rows, base))
        verdict = e2e_verdict(rows, plan)
        if verdict:
            print(verdict)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "run_id": bench.run_id,
                "broker": "external" if external else "tansu",
                "cpus": os.cpu_count(),
                "elapsed_s": elapsed,
                "plan": asdict(plan),
                "baseline_rate": base,
                "rows": [asdict(r) | {"x_baseline": r.in_rate / base if base and r.in_rate else None} for r in rows],
            }
            args.json.write_text(json.dumps(payload, ensure_ascii=False, indent=2))
        ok = not any("FAILED" in r.note for r in rows)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted; stopping children", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            bench.stop_all()
        if broker is not None:
            broker.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"service logs kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
