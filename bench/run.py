"""`python -m bench.run`: every figure of docs/benchmarks.md in one bounded run (< 10 min).

Everything runs on loopback ports with temporary instance folders: the Procfile's `web` and
`worker` lines as written (tests/procs.py starts them), and the baseline apps of
bench/baselines.py under the same gunicorn command line with only the app swapped.
Throughput figures and their baselines are measured interleaved, round by round, so that
whatever else the machine does weighs on both alike. The run stops by itself: every load
run has a duration, every wait a timeout, and phases that would overrun the time budget
are skipped (and reported as skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    auth,
    facade,
    idle,
    pages,
    populate,
    prepare,
    report,
    slow_clients,
    sysinfo,
    throughput,
    uploads,
    worker,
)
from bench.harness import ROOT, SETTLE_SECONDS, Bench, log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The run's options; --quick shrinks every number for a smoke run."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=float(os.environ.get("BENCH_IDLE_SECONDS", 120)),
        help="how long idle workers wait before the after-idle samples (default 120)",
    )
    p.add_argument("--duration", type=float, default=3, help="seconds per throughput run")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per figure")
    p.add_argument("--connections", type=int, default=16, help="connections of the main runs")
    p.add_argument("--sweep-duration", type=float, default=2, help="seconds per sweep point")
    p.add_argument("--jobs", type=int, default=100_000, help="jobs in the large database")
    p.add_argument("--small-jobs", type=int, default=100, help="jobs in the small database")
    p.add_argument("--rss-jobs", type=int, default=1000, help="jobs before reading RSS")
    p.add_argument("--noop-tasks", type=int, default=3000, help="no-op tasks for Huey's rate")
    p.add_argument("--idle-stacks", type=int, default=5, help="stacks left idle (samples)")
    p.add_argument("--latency-samples", type=int, default=16, help="idle-queue samples")
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--budget", type=float, default=600, help="seconds before phases are skipped")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--results", type=Path, help="also write the raw results here (JSON)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a minute or two (small numbers, report under /tmp)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.idle_seconds = min(args.idle_seconds, 15)
        args.duration, args.rounds, args.sweep_duration = 2, 1, 1
        args.jobs, args.rss_jobs, args.noop_tasks = 5000, 100, 500
        args.idle_stacks, args.latency_samples = 2, 5
        if args.out == ROOT / "docs" / "benchmarks.md":
            args.out = Path(tempfile.gettempdir()) / "darkroom-bench-quick" / "benchmarks.md"
    return args


def run(bench: Bench) -> dict[str, Any]:
    """Every phase in order, each only if it fits the budget; the results."""
    a = bench.args
    results = bench.results
    results["meta"] = sysinfo.collect(ROOT)
    results["meta"]["tool"] = bench.tool or results["meta"]["load_tool"]
    results["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    log(f"load generator: {results['meta']['tool']}; temp folder {bench.tmp}")
    idlers = idle.IdleStacks(bench)
    idlers.start()
    api, status_ids = prepare.api_stack(bench)
    media_id, static_path, size = prepare.media_file(bench, api)
    idlers.ready()
    base = prepare.baseline_stack(bench)
    # (name, about how many seconds it takes, the phase)
    on_the_api: list[tuple[str, float, Callable[[], None]]] = [
        (
            "throughput",
            a.rounds * 5 * (a.duration + 0.3 + SETTLE_SECONDS) + 10,
            lambda: throughput.measure(bench, base, api, status_ids),
        ),
        (
            "status with a bearer key",
            auth.cost(bench),
            lambda: auth.measure(bench, api, status_ids),
        ),
        (
            "slow clients",
            2 * max(2.0, a.duration) + 10,
            lambda: slow_clients.measure(bench, api, status_ids),
        ),
        (
            "media download",
            a.rounds * 2 * a.duration + 5,
            lambda: throughput.media(bench, base, api, media_id, static_path, size),
        ),
        (
            "uploads",
            uploads.cost(bench),
            lambda: uploads.measure(bench, api, prepare.static_file(bench)),
        ),
        (
            "generate with worker",
            a.duration + 10,
            lambda: throughput.generate_with_worker(bench, api),
        ),
        ("openai face", facade.cost(bench), lambda: facade.measure(bench)),
    ]
    for name, cost, fn in on_the_api:
        if bench.fits(name, cost + 60):
            fn()
        idlers.sample_due()
    template_db = bench.tmp / "template.db"
    populate.make_template(api.instance / "darkroom.db", template_db)
    bench.close_stack(base)
    bench.close_stack(api)
    on_their_own: list[tuple[str, float, Callable[[], None]]] = [
        ("pages at 100 vs 100k jobs", 70, lambda: pages.measure(bench, template_db)),
        ("queue", 100, lambda: worker.queue(bench)),
        ("huey no-op", 20, lambda: worker.noop(bench)),
        ("thumbnails", 20, lambda: worker.thumbs(bench)),
    ]
    for name, cost, fn in on_their_own:
        if bench.fits(name, cost):
            fn()
        idlers.sample_due()
    idlers.sample_due(final=True)
    results["idle"] = idlers.results()
    results["meta"]["loadavg_end"] = sysinfo.loadavg()
    results["elapsed_s"] = bench.elapsed()
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; write the report (and the raw results with --results)."""
    args = parse_args(argv)
    bench = Bench(args)
    try:
        results = run(bench)
    except BaseException:
        log(f"failed after {bench.elapsed():.0f}s; logs are in {bench.tmp}")
        args.keep = True
        raise
    finally:
        bench.close()
    results["meta"]["foreign_cpu"] = bench.foreign_cpu()
    if args.results:
        args.results.write_text(json.dumps(results, indent=1, default=str))
    report.write(results, args.out)
    log(f"wrote {args.out} in {results['elapsed_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
