"""The API's throughput against the baselines, on the stacks of bench/prepare.py.

Darkroom's figures and their baselines run interleaved, round by round, so that whatever
else the machine does weighs on both alike.
"""

from __future__ import annotations

import random
from typing import Any

from bench.harness import SETTLE_SECONDS, Bench, count_active, job_body, log, status_paths
from bench.load import LoadResult, Spec
from tests.procs import API, Stack

SWEEP_CONNECTIONS = (1, 2, 4, 8, 16, 32, 64)
GENERATE = Spec.post_json(f"{API}/jobs/generate", job_body("a lighthouse on a cliff at dusk"))
MEDIA_CONNECTIONS = 4


def measure(bench: Bench, base: Stack, api: Stack, status_ids: list[str]) -> None:
    """(a), (b), (c), status and generate: interleaved rounds, then a concurrency sweep."""
    a = bench.args
    read_paths = tuple(f"/read/{i}" for i in range(1, 201))
    figures: dict[str, tuple[Stack, Spec]] = {
        "a_json": (base, Spec.get("/json")),
        "b_read": (base, Spec.get(*read_paths)),
        "c_insert": (base, Spec.post_json("/insert", {"name": "x", "payload": "y" * 64})),
        "status": (api, Spec.get(*status_paths(status_ids))),
        "generate": (api, GENERATE),
    }
    runs: dict[str, list[LoadResult]] = {k: [] for k in figures}
    for stack, spec in figures.values():  # warm-up, not recorded
        bench.load(stack, spec, a.connections, 1)
    for rnd in range(a.rounds):
        order = list(figures)
        random.Random(rnd).shuffle(order)
        for name in order:
            stack, spec = figures[name]
            r = bench.load(stack, spec, a.connections, a.duration)
            runs[name].append(r)
            log(
                f"round {rnd + 1} {name}: {r.rps:.0f} req/s, "
                f"p50 {r.p50_ms:.1f} ms, errors {r.errors}"
            )
    bench.results["throughput"] = {k: [r.as_dict() for r in v] for k, v in runs.items()}
    bench.results["pending_after_generate"] = count_active(api)
    sweep_cost = len(SWEEP_CONNECTIONS) * len(figures) * (a.sweep_duration + 0.3 + SETTLE_SECONDS)
    if not bench.fits("latency-vs-load sweep", sweep_cost + 200):
        return
    sweep: dict[str, list[dict[str, Any]]] = {k: [] for k in figures}
    for c in SWEEP_CONNECTIONS:
        for name, (stack, spec) in figures.items():
            sweep[name].append(bench.load(stack, spec, c, a.sweep_duration).as_dict())
        log(f"sweep c={c} done")
    bench.results["sweep"] = sweep


def media(
    bench: Bench, base: Stack, api: Stack, media_id: str, static_path: str, size: int
) -> None:
    """The 4 MB picture: Darkroom's media route against the same file served as static."""
    specs = {
        "darkroom": (api, Spec.get(f"{API}/media/{media_id}")),
        "static": (base, Spec.get(static_path)),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in specs}
    for stack, spec in specs.values():
        bench.load(stack, spec, MEDIA_CONNECTIONS, 1)
    for _ in range(bench.args.rounds):
        for name, (stack, spec) in specs.items():
            r = bench.load(stack, spec, MEDIA_CONNECTIONS, max(2.0, bench.args.duration - 1))
            runs[name].append(r.as_dict() | {"mb_per_s": r.mb_per_s})
    bench.results["media"] = {"size_bytes": size, "runs": runs}
    log("media: " + ", ".join(f"{k} {v[-1]['mb_per_s']:.0f} MB/s" for k, v in runs.items()))


def generate_with_worker(bench: Bench, api: Stack) -> None:
    """Submissions while the worker drains the backlog: the errors that contention brings."""
    api.start_worker()
    api.wait_for_worker(60)
    r = bench.load(api, GENERATE, bench.args.connections, bench.args.duration)
    bench.results["generate_with_worker"] = r.as_dict()
    log(f"generate with the worker running: {r.rps:.0f} req/s, errors {r.errors}")
    api.stop_worker()
    text = api.log_text("web") + api.log_text("worker")
    bench.results["api_log_trouble"] = sum(
        1 for line in text.splitlines() if "locked" in line or "Traceback" in line
    )
