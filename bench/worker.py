"""The worker's figures: start latency, a backlog through one worker, RSS, thumbnails.

The backlog's baseline is Huey's own rate: no-op tasks through the Procfile's worker line
on a SqliteHuey built like Darkroom's (bench/noop.py).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench import populate
from bench.harness import (
    ROOT,
    Bench,
    job_body,
    log,
    rss_mb,
    start_latency,
    submit,
    wait_jobs_done,
)
from bench.load import percentile
from tests.procs import API, Stack


def _span(starts: list[str], ends: list[str]) -> float:
    """Seconds from the first start to the last end (stored timestamps)."""
    return (populate.parse_stamp(max(ends)) - populate.parse_stamp(min(starts))).total_seconds()


def _idle_latency(bench: Bench, stack: Stack) -> None:
    """Jobs one at a time, 0.5-4 s apart, on a worker that runs nothing else."""
    rng = random.Random(11)
    samples = []
    for _ in range(bench.args.latency_samples):
        time.sleep(rng.uniform(0.5, 4.0))
        samples.append(start_latency(stack))
    bench.results["start_latency_idle"] = samples
    lat = [s["from_return_ms"] for s in samples]
    log(
        f"submit->start, idle queue: p50 {percentile(lat, 50):.0f} ms, "
        f"p95 {percentile(lat, 95):.0f} ms"
    )


def _fill(stack: Stack, count: int) -> list[str]:
    """Submit `count` tiny jobs from 8 clients; their ids."""
    local = threading.local()

    def post(i: int) -> str:
        if not hasattr(local, "s"):  # a session per client thread: Session is not thread-safe
            local.s = requests.Session()
        r = local.s.post(
            stack.url(f"{API}/jobs/generate"), json=job_body(f"queue job {i}"), timeout=30
        )
        if r.status_code != 201:
            raise RuntimeError(f"submit answered {r.status_code}: {r.text[:200]}")
        return str(r.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, range(count)))


def _default_size(bench: Bench, stack: Stack) -> None:
    """The demo at its default size (1024x1024, 4 steps), for scale: a few jobs."""
    n = 8
    ids = [submit(stack, {"seed": i}, prompt=f"default job {i}") for i in range(n)]
    wait_jobs_done(stack, 60)
    marks = ",".join("?" * len(ids))
    rows = stack.db_rows(f"SELECT started_at, completed_at FROM jobs WHERE id IN ({marks})", *ids)
    span = _span([r[0] for r in rows], [r[1] for r in rows])
    bench.results["queue_default_size"] = {"jobs": n, "jobs_per_s": n / span if span else 0}


def queue(bench: Bench) -> None:
    """Idle-queue start latency, then 1,000 jobs through one worker, then RSS."""
    stack = bench.running_stack("queue")
    time.sleep(1.0)
    _idle_latency(bench, stack)
    # The backlog: every job queued with the worker stopped, then one worker drains it.
    assert stack.web is not None and stack.worker is not None
    rss_web_before = rss_mb(stack.web.pid)
    rss_worker_before = rss_mb(stack.worker.pid, children=False)
    stack.stop_worker()
    t = time.monotonic()
    ids = _fill(stack, bench.args.rss_jobs)
    fill_s = time.monotonic() - t
    log(f"{len(ids)} jobs queued in {fill_s:.1f}s; starting the worker")
    stack.start_worker()
    done = wait_jobs_done(stack, max(30.0, min(240.0, bench.remaining() - 60)))
    rows = stack.db_rows(
        "SELECT id, status, started_at, completed_at FROM jobs WHERE prompt LIKE 'queue job %'"
    )
    completed = [r for r in rows if r[1] == "completed"]
    starts = [r[2] for r in rows if r[2]]
    ends = [r[3] for r in completed if r[3]]
    span = _span(starts, ends) if starts and ends else 0.0
    bench.results["queue"] = {
        "jobs": len(ids),
        "completed": len(completed),
        "all_done": done,
        "fill_seconds": fill_s,
        "span_seconds": span,
        "jobs_per_s": len(completed) / span if span else 0.0,
    }
    log(
        f"queue: {len(completed)} jobs in {span:.1f}s = "
        f"{bench.results['queue']['jobs_per_s']:.1f} jobs/s"
    )
    time.sleep(2.0)
    assert stack.worker is not None
    bench.results["rss"] = {
        "web_before": rss_web_before,
        "worker_before": rss_worker_before,
        "web_after": rss_mb(stack.web.pid),
        "worker_after": rss_mb(stack.worker.pid, children=False),
        "jobs": len(completed),
    }
    if bench.fits("default-size queue run", 60):
        _default_size(bench, stack)
    bench.close_stack(stack)


def noop(bench: Bench) -> None:
    """Huey's own rate: no-op tasks through the Procfile's worker line on a SqliteHuey."""
    n = bench.args.noop_tasks
    path = bench.tmp / "noop" / "huey.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    # bench.noop builds its queue from the environment at import: (re)import it after setting it.
    os.environ["BENCH_NOOP_DB"] = str(path)
    module = (
        importlib.reload(sys.modules["bench.noop"])
        if "bench.noop" in sys.modules
        else importlib.import_module("bench.noop")
    )
    for i in range(n):
        module.noop(i)
    huey = module.huey
    stack = bench.stack("noop", env={"BENCH_NOOP_DB": str(path)})
    stack.commands["worker"] = bench.procfile["worker"].replace(
        "webapp.worker.huey", "bench.noop.huey"
    )
    stack.start_worker()
    deadline = time.monotonic() + 120
    first = None
    count = n
    while time.monotonic() < deadline:
        count = huey.pending_count()
        now = time.monotonic()
        if first is None and count < n:
            first = (now, count)
        if count == 0:
            break
        time.sleep(0.002)
    end = time.monotonic()
    bench.close_stack(stack)
    if first is None or count:
        raise RuntimeError(f"no-op tasks not drained (left {count})")
    rate = first[1] / (end - first[0]) if end > first[0] else 0.0
    bench.results["noop"] = {"tasks": n, "tasks_per_s": rate, "seconds": end - first[0]}
    log(f"huey no-op: {rate:.0f} tasks/s")


def thumbs(bench: Bench) -> None:
    """Thumbnail timings from `python -m bench.thumbs`, in a child with a scratch instance."""
    scratch = bench.tmp / "thumbs"
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")} | {
        "DARKROOM_INSTANCE_PATH": str(scratch)
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.thumbs", "20"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"bench.thumbs failed: {out.stderr[-800:]}")
    bench.results["thumbs"] = json.loads(line.removeprefix("BENCHJSON "))
    ms = bench.results["thumbs"]["ms"]
    log(
        f"thumbnail 2048: darkroom {ms['darkroom_make_thumbnail']['median']:.1f} ms, "
        f"pillow {ms['pillow_thumbnail']['median']:.1f} ms"
    )
