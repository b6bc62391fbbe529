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
import contextlib
import importlib
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import psutil
import requests

from bench import baselines, load, populate, report, sysinfo
from bench.load import LoadResult, Spec, percentile
from tests.procs import API, Stack, procfile_commands

ROOT = Path(__file__).resolve().parent.parent
HIGH_LIMIT = "100000000/minute"
# The demo model at its fastest: no pause per step, one step, the smallest picture.
TINY = {"num_inference_steps": 1, "width": 128, "height": 128, "num_outputs": 1}
ACTIVE = ("pending", "processing", "retrying")
SWEEP_CONNECTIONS = (1, 2, 4, 8, 16, 32, 64)
SETTLE_SECONDS = 1.0  # quiet before each load run, after os.sync() (see Bench.load)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    t = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(t, f, 0.0) for f in fields))


def own_seconds() -> float:
    """CPU seconds of this process and of every descendant it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    p.add_argument("--budget", type=float, default=570, help="seconds before phases are skipped")
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


class Bench:
    """One run: the processes it started, the results, and the clock."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
        self.tmp = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
        self.stacks: list[Stack] = []
        self.tool = None if args.tool == "auto" else args.tool
        self.results: dict[str, Any] = {"skipped": [], "notes": []}
        self.idle: list[dict[str, Any]] = []
        self._sampler_stop = threading.Event()
        self.procfile = procfile_commands()
        self.cpu_start = (busy_seconds(), own_seconds())

    def foreign_cpu(self) -> dict[str, float]:
        """CPU time that processes other than this run's used meanwhile (after close())."""
        wall = self.elapsed()
        busy = busy_seconds() - self.cpu_start[0]
        own = own_seconds() - self.cpu_start[1]
        cores = os.cpu_count() or 1
        foreign = max(0.0, busy - own)
        return {"core_seconds": foreign, "share": foreign / (wall * cores) if wall else 0.0}

    # -- helpers ---------------------------------------------------------------------------

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def fits(self, name: str, seconds: float) -> bool:
        """True when a phase of about `seconds` still fits the budget; else note the skip."""
        if self.remaining() >= seconds:
            return True
        self.results["skipped"].append(
            f"{name} (needed ~{seconds:.0f}s, {self.remaining():.0f}s left)"
        )
        log(f"SKIP {name}: not enough time left")
        return False

    def load(self, stack: Stack, spec: Spec, connections: int, duration: float) -> LoadResult:
        """One load run against a stack's web, with the CPU time its processes spent on it.

        Each run starts on a settled machine: the dirty pages that a writing run (inserts,
        submissions) leaves are written out first, with `SETTLE_SECONDS` of quiet, instead
        of being written out by the kernel during whichever run comes next. Without it a
        read measured right after a write run lost a fifth of its throughput.
        """
        os.sync()
        time.sleep(SETTLE_SECONDS)
        before = self.web_cpu(stack)
        result = load.run(
            stack.base_url,
            spec,
            connections=connections,
            duration=duration,
            threads=min(2, connections),
            tool=self.tool,
        )
        spent = self.web_cpu(stack) - before
        if result.requests:
            result.server_cpu_ms = 1000 * spent / result.requests
        return result

    @staticmethod
    def web_cpu(stack: Stack) -> float:
        """CPU seconds of the web process and its workers (gunicorn master + workers)."""
        assert stack.web is not None
        total = 0.0
        try:
            master = psutil.Process(stack.web.pid)
            for proc in (master, *master.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    total += t.user + t.system
        except psutil.Error:
            pass
        return total

    def stack(self, name: str, *, env: dict[str, str] | None = None) -> Stack:
        """A Darkroom stack (not started) with limits out of the way and the demo at full speed."""
        extra = {
            "DARKROOM_RATE_LIMIT_CREATE": HIGH_LIMIT,
            "DARKROOM_RATE_LIMIT_STATUS": HIGH_LIMIT,
            "DARKROOM_RATE_LIMIT_POLL": HIGH_LIMIT,
            "DARKROOM_DEMO_STEP_SECONDS": "0",
        }
        extra.update(env or {})
        stack = Stack(self.tmp / name, step_seconds=0, env=extra)
        self.stacks.append(stack)
        return stack

    def close_stack(self, stack: Stack) -> None:
        stack.close()
        if stack in self.stacks:
            self.stacks.remove(stack)

    @staticmethod
    def wait_http(stack: Stack, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stack.web is not None and stack.web.poll() is not None:
                raise RuntimeError(f"web exited\n{stack.logs()}")
            try:
                if stack.http.get(stack.url(path), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{path} did not answer in {timeout}s\n{stack.logs()}")

    @staticmethod
    def db(stack: Stack) -> sqlite3.Connection:
        return sqlite3.connect(
            f"file:{stack.instance / 'darkroom.db'}?mode=ro", uri=True, timeout=15
        )

    @staticmethod
    def submit(stack: Stack, params: dict[str, Any], prompt: str = "bench job") -> str:
        r = stack.post(
            f"{API}/jobs/generate", json={"prompt": prompt, "model": "demo", "parameters": params}
        )
        if r.status_code != 201:
            raise RuntimeError(f"submit answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["id"])

    def wait_jobs_done(self, stack: Stack, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = self.db(stack)
            try:
                left = conn.execute(
                    f"SELECT COUNT(*) FROM jobs WHERE status IN ({','.join('?' * len(ACTIVE))})",
                    ACTIVE,
                ).fetchone()[0]
            finally:
                conn.close()
            if left == 0:
                return True
            time.sleep(0.05)
        return False

    # -- processes' resources --------------------------------------------------------------

    @staticmethod
    def rss_mb(pid: int, children: bool = True) -> dict[str, float]:
        proc = psutil.Process(pid)
        out = {"main": proc.memory_info().rss / 2**20}
        if children:
            for i, child in enumerate(proc.children(recursive=True)):
                out[f"child{i + 1}"] = child.memory_info().rss / 2**20
        out["total"] = sum(out.values())
        return out

    @staticmethod
    def cpu_seconds(pid: int) -> float:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)

    # -- phases ----------------------------------------------------------------------------

    def start_idle_stacks(self) -> None:
        """Stacks whose worker does nothing until its after-idle sample (their web is 1 process)."""
        n = self.args.idle_stacks
        if n <= 0:
            return
        log(f"starting {n} idle stacks (web with WEB_CONCURRENCY=1 + worker)")
        for i in range(n):
            stack = self.stack(f"idle{i}", env={"WEB_CONCURRENCY": "1"})
            stack.start_web(wait=False)
            stack.start_worker()
            self.idle.append({"stack": stack, "samples": []})

    def idle_stacks_ready(self) -> None:
        for entry in self.idle:
            stack = entry["stack"]
            stack.wait_live(90)
            stack.wait_for_worker(90)
            entry["ready"] = time.monotonic()
            assert stack.worker is not None
            entry["pid"] = stack.worker.pid
        threading.Thread(target=self._sample_idle_cpu, daemon=True, name="cpu-sampler").start()
        log("idle stacks ready; their workers now idle")

    def _sample_idle_cpu(self) -> None:
        while not self._sampler_stop.wait(1.0):
            now = time.monotonic()
            for entry in self.idle:
                if "sampled" in entry:
                    continue
                with contextlib.suppress(psutil.Error):
                    entry["samples"].append((now, self.cpu_seconds(entry["pid"])))

    def after_idle_samples(self, final: bool = False) -> None:
        """Sample every idle stack that has idled long enough (all of them when `final`)."""
        for entry in self.idle:
            if "sampled" in entry:
                continue
            idle_for = time.monotonic() - entry["ready"]
            wait = self.args.idle_seconds - idle_for
            if wait > 0:
                if not final:
                    continue
                # The end of the run: wait for the idle time, as far as the budget allows.
                wait = min(wait, max(0.0, self.remaining() - 20))
                if wait > 0:
                    log(f"waiting {wait:.0f}s for the idle workers")
                    time.sleep(wait)
            stack = entry["stack"]
            idle_for = time.monotonic() - entry["ready"]
            # CPU while idle: over the last 20 s and over the whole idle time (after 5 s).
            cpu_now = self.cpu_seconds(entry["pid"])
            now = time.monotonic()
            samples = entry["samples"]
            w20 = [s for s in samples if s[0] <= now - 20]
            whole = [s for s in samples if s[0] >= entry["ready"] + 5]
            entry["cpu_pct_20s"] = (
                100 * (cpu_now - w20[-1][1]) / (now - w20[-1][0]) if w20 else None
            )
            entry["cpu_pct_whole"] = (
                100 * (cpu_now - whole[0][1]) / (now - whole[0][0]) if whole else None
            )
            entry["idle_for"] = idle_for
            entry["latency"] = self.one_start_latency(stack)
            entry["sampled"] = True
            log(
                f"after {idle_for:.0f}s idle: submit->start "
                f"{entry['latency']['from_return_ms']:.0f} ms, "
                f"idle CPU {entry['cpu_pct_20s'] or 0:.2f}% (20 s)"
            )
            self.close_stack(stack)

    def one_start_latency(self, stack: Stack, timeout: float = 20) -> dict[str, float]:
        """Submit one job; milliseconds from the POST (sent and returned) to its started_at."""
        sent = time.time()
        job_id = self.submit(stack, TINY, prompt="latency probe")
        returned = time.time()
        conn = self.db(stack)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                row = conn.execute("SELECT started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row and row[0]:
                    started = (
                        datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S.%f")
                        .replace(tzinfo=UTC)
                        .timestamp()
                    )
                    return {
                        "from_return_ms": (started - returned) * 1000,
                        "from_send_ms": (started - sent) * 1000,
                        "post_ms": (returned - sent) * 1000,
                    }
                time.sleep(0.01)
        finally:
            conn.close()
        raise RuntimeError(f"job {job_id} did not start in {timeout}s\n{stack.logs()}")

    def prepare_api_stack(self) -> Stack:
        """Darkroom for the API figures: 20 completed jobs to read, then the worker stopped."""
        stack = self.stack("api")
        stack.start_web(wait=False)
        stack.start_worker()
        stack.wait_live(90)
        stack.wait_for_worker(90)
        ids = [self.submit(stack, TINY, prompt=f"status probe {i}") for i in range(20)]
        ids.append(self.submit(stack, {"num_inference_steps": 1}, prompt="a default-size job"))
        if not self.wait_jobs_done(stack, 60):
            raise RuntimeError(f"setup jobs did not finish\n{stack.logs()}")
        stack.stop_worker()
        self.status_ids = ids
        return stack

    def prepare_media(self, stack: Stack) -> tuple[str, str, int]:
        """A 4 MB PNG as one media item of the API stack and as the baseline's static file."""
        from PIL import Image

        side = 1182  # 1182 x 1182 RGB noise: about 4.2 MB as PNG
        image = Image.frombytes("RGB", (side, side), random.Random(7).randbytes(side * side * 3))
        static = self.tmp / "static"
        static.mkdir(exist_ok=True)
        path = static / "picture.png"
        image.save(path, "PNG", compress_level=1)
        size = path.stat().st_size
        conn = sqlite3.connect(stack.instance / "darkroom.db", timeout=15)
        try:
            media_id, old = conn.execute(
                "SELECT id, storage_path FROM media ORDER BY created_at LIMIT 1"
            ).fetchone()
            target = stack.instance / "media" / old
            shutil.copyfile(path, target)
            import hashlib

            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            conn.execute(
                "UPDATE media SET file_size_bytes = ?, width = ?, height = ?, sha256 = ? "
                "WHERE id = ?",
                (size, side, side, digest, media_id),
            )
            conn.commit()
        finally:
            conn.close()
        return media_id, "/static/picture.png", size

    def start_baselines(self) -> Stack:
        web = self.procfile["web"]
        if "wsgi:app" not in web:
            raise RuntimeError(f"the Procfile's web line does not serve wsgi:app: {web}")
        db_path = self.tmp / "baseline" / "baseline.db"
        db_path.parent.mkdir(parents=True, exist_ok=True)
        baselines.init_db(str(db_path))
        stack = self.stack(
            "baseline",
            env={"BENCH_BASELINE_DB": str(db_path), "BENCH_STATIC_DIR": str(self.tmp / "static")},
        )
        stack.commands["web"] = web.replace("wsgi:app", "bench.baselines:app")
        self.results["baseline_command"] = stack.commands["web"]
        self.results["web_command"] = web
        self.results["worker_command"] = self.procfile["worker"]
        stack.start_web(wait=False)
        self.wait_http(stack, "/json")
        return stack

    def throughput(self, base: Stack, api: Stack) -> None:
        """(a), (b), (c), status and generate: interleaved rounds, then a concurrency sweep."""
        a = self.args
        read_paths = tuple(f"/read/{i}" for i in range(1, 201))
        status_paths = tuple(f"{API}/jobs/status/{i}" for i in self.status_ids)
        body = {"prompt": "a lighthouse on a cliff at dusk", "model": "demo", "parameters": TINY}
        figures: dict[str, tuple[Stack, Spec]] = {
            "a_json": (base, Spec.get("/json")),
            "b_read": (base, Spec.get(*read_paths)),
            "c_insert": (base, Spec.post_json("/insert", {"name": "x", "payload": "y" * 64})),
            "status": (api, Spec.get(*status_paths)),
            "generate": (api, Spec.post_json(f"{API}/jobs/generate", body)),
        }
        runs: dict[str, list[LoadResult]] = {k: [] for k in figures}
        for stack, spec in figures.values():  # warm-up, not recorded
            self.load(stack, spec, a.connections, 1)
        for rnd in range(a.rounds):
            order = list(figures)
            random.Random(rnd).shuffle(order)
            for name in order:
                stack, spec = figures[name]
                r = self.load(stack, spec, a.connections, a.duration)
                runs[name].append(r)
                log(
                    f"round {rnd + 1} {name}: {r.rps:.0f} req/s, "
                    f"p50 {r.p50_ms:.1f} ms, errors {r.errors}"
                )
        self.results["throughput"] = {k: [r.as_dict() for r in v] for k, v in runs.items()}
        self.results["pending_after_generate"] = self.count_active(api)
        sweep_cost = (
            len(SWEEP_CONNECTIONS) * len(figures) * (a.sweep_duration + 0.3 + SETTLE_SECONDS)
        )
        if not self.fits("latency-vs-load sweep", sweep_cost + 200):
            return
        sweep: dict[str, list[dict[str, Any]]] = {k: [] for k in figures}
        for c in SWEEP_CONNECTIONS:
            for name, (stack, spec) in figures.items():
                sweep[name].append(self.load(stack, spec, c, a.sweep_duration).as_dict())
            log(f"sweep c={c} done")
        self.results["sweep"] = sweep

    def count_active(self, stack: Stack) -> int:
        conn = self.db(stack)
        try:
            return int(
                conn.execute(
                    f"SELECT COUNT(*) FROM jobs WHERE status IN ({','.join('?' * len(ACTIVE))})",
                    ACTIVE,
                ).fetchone()[0]
            )
        finally:
            conn.close()

    def media(self, base: Stack, api: Stack, media_id: str, static_path: str, size: int) -> None:
        specs = {
            "darkroom": (api, Spec.get(f"{API}/media/{media_id}")),
            "static": (base, Spec.get(static_path)),
        }
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in specs}
        for stack, spec in specs.values():
            self.load(stack, spec, 4, 1)
        for _ in range(self.args.rounds):
            for name, (stack, spec) in specs.items():
                r = self.load(stack, spec, 4, max(2.0, self.args.duration - 1))
                runs[name].append(r.as_dict() | {"mb_per_s": r.mb_per_s})
        self.results["media"] = {"size_bytes": size, "runs": runs}
        log("media: " + ", ".join(f"{k} {v[-1]['mb_per_s']:.0f} MB/s" for k, v in runs.items()))

    def generate_with_worker(self, api: Stack) -> None:
        """Submissions while the worker drains the backlog: the errors that contention brings."""
        api.start_worker()
        api.wait_for_worker(60)
        body = {"prompt": "a lighthouse on a cliff at dusk", "model": "demo", "parameters": TINY}
        r = self.load(
            api,
            Spec.post_json(f"{API}/jobs/generate", body),
            self.args.connections,
            self.args.duration,
        )
        self.results["generate_with_worker"] = r.as_dict()
        log(f"generate with the worker running: {r.rps:.0f} req/s, errors {r.errors}")
        api.stop_worker()
        text = api.log_text("web") + api.log_text("worker")
        self.results["api_log_trouble"] = sum(
            1 for line in text.splitlines() if "locked" in line or "Traceback" in line
        )

    def pages(self, template_db: Path) -> None:
        """The job list and the gallery at 100 and at 100,000 jobs, page 1 and deep pages."""
        template = populate.read_template(template_db)
        sizes = (self.args.small_jobs, self.args.jobs)
        stacks: dict[int, Stack] = {}
        info: dict[str, Any] = {}
        for n in sizes:
            stack = self.stack(f"pages{n}")
            db_path = stack.instance / "darkroom.db"
            t = time.monotonic()
            populate.empty_copy(template_db, db_path)
            populate.populate(db_path, n, template)
            info[str(n)] = {
                "jobs": populate.count_rows(db_path, "jobs"),
                "media": populate.count_rows(db_path, "media"),
                "populate_s": time.monotonic() - t,
            }
            stack.start_web(wait=False)
            stacks[n] = stack
        for stack in stacks.values():
            stack.wait_live(90)
        per_page = 25
        variants: dict[str, Callable[[int, Path], Spec]] = {
            "api_page1": lambda n, p: Spec.get(f"{API}/jobs?page=1&per_page={per_page}"),
            "api_deep": lambda n, p: Spec.get(
                f"{API}/jobs?page={max(1, -(-n // per_page))}&per_page={per_page}"
            ),
            "api_status_filter": lambda n, p: Spec.get(
                f"{API}/jobs?page=1&per_page={per_page}&status=completed"
            ),
            "gallery_index": lambda n, p: Spec.get("/"),
            # Deep, yet with a full page (24 cards) after the cursor at either size.
            "gallery_deep": lambda n, p: Spec.get(
                f"/gallery?cursor={populate.gallery_cursor(p, min(int(n * 0.96), n - 30))}",
                headers={"HX-Request": "true"},
            ),
            "gallery_search": lambda n, p: Spec.get(
                "/gallery?q=lighthouse+storm", headers={"HX-Request": "true"}
            ),
        }
        out: dict[str, dict[str, Any]] = {}
        passes = 1 if self.args.quick else 3
        for name, make in variants.items():
            specs = {n: make(n, stack.instance / "darkroom.db") for n, stack in stacks.items()}
            for n, stack in stacks.items():
                spec = specs[n]
                check = stack.get(spec.paths[0], headers=dict(spec.headers))
                if check.status_code != 200:
                    raise RuntimeError(f"{name} at {n}: {check.status_code} {check.text[:200]}")
                self.load(stack, spec, 1, 1)  # warm-up
            # Small and large alternate, one second at a time, so both see the same machine.
            runs: dict[int, list[LoadResult]] = {n: [] for n in stacks}
            for _ in range(passes):
                for n, stack in stacks.items():
                    runs[n].append(self.load(stack, specs[n], 1, 3 if passes == 1 else 1))
            out[name] = {
                str(n): {
                    "path": specs[n].paths[0],
                    "requests": sum(x.requests for x in rs),
                    "p50_ms": median(x.p50_ms for x in rs),
                    "p95_ms": median(x.p95_ms for x in rs),
                    "p99_ms": median(x.p99_ms for x in rs),
                    "errors": sum(x.errors for x in rs),
                    "server_cpu_ms": median(x.server_cpu_ms or 0.0 for x in rs),
                }
                for n, rs in runs.items()
            }
            log(
                f"pages {name}: "
                + ", ".join(f"{n}: p50 {v['p50_ms']:.1f} ms" for n, v in out[name].items())
            )
        self.results["pages"] = {"sizes": [str(n) for n in sizes], "db": info, "pages": out}
        for stack in stacks.values():
            self.close_stack(stack)

    def queue(self) -> None:
        """Idle-queue start latency, then 1,000 jobs through one worker, then RSS."""
        a = self.args
        stack = self.stack("queue")
        stack.start_web(wait=False)
        stack.start_worker()
        stack.wait_live(90)
        stack.wait_for_worker(90)
        time.sleep(1.0)
        rng = random.Random(11)
        samples = []
        for _ in range(a.latency_samples):
            time.sleep(rng.uniform(0.5, 4.0))
            samples.append(self.one_start_latency(stack))
        self.results["start_latency_idle"] = samples
        lat = [s["from_return_ms"] for s in samples]
        log(
            f"submit->start, idle queue: p50 {percentile(lat, 50):.0f} ms, "
            f"p95 {percentile(lat, 95):.0f} ms"
        )
        # The backlog: every job queued with the worker stopped, then one worker drains it.
        assert stack.web is not None
        rss_web_before = self.rss_mb(stack.web.pid)
        assert stack.worker is not None
        rss_worker_before = self.rss_mb(stack.worker.pid, children=False)
        stack.stop_worker()
        local = threading.local()

        def post(i: int) -> str:
            if not hasattr(local, "s"):
                local.s = requests.Session()
            r = local.s.post(
                stack.url(f"{API}/jobs/generate"),
                json={"prompt": f"queue job {i}", "model": "demo", "parameters": TINY},
                timeout=30,
            )
            if r.status_code != 201:
                raise RuntimeError(f"submit answered {r.status_code}: {r.text[:200]}")
            return str(r.json()["id"])

        t = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, range(a.rss_jobs)))
        fill_s = time.monotonic() - t
        log(f"{len(ids)} jobs queued in {fill_s:.1f}s; starting the worker")
        stack.start_worker()
        done = self.wait_jobs_done(stack, max(30.0, min(240.0, self.remaining() - 60)))
        conn = self.db(stack)
        try:
            rows = conn.execute(
                "SELECT id, status, started_at, completed_at FROM jobs "
                "WHERE prompt LIKE 'queue job %'"
            ).fetchall()
        finally:
            conn.close()
        completed = [r for r in rows if r[1] == "completed"]
        starts = [r[2] for r in rows if r[2]]
        ends = [r[3] for r in completed if r[3]]
        span = (
            (populate._parse(max(ends)) - populate._parse(min(starts))).total_seconds()
            if starts and ends
            else 0.0
        )
        self.results["queue"] = {
            "jobs": len(ids),
            "completed": len(completed),
            "all_done": done,
            "fill_seconds": fill_s,
            "span_seconds": span,
            "jobs_per_s": len(completed) / span if span else 0.0,
        }
        log(
            f"queue: {len(completed)} jobs in {span:.1f}s = "
            f"{self.results['queue']['jobs_per_s']:.1f} jobs/s"
        )
        time.sleep(2.0)
        assert stack.worker is not None
        self.results["rss"] = {
            "web_before": rss_web_before,
            "worker_before": rss_worker_before,
            "web_after": self.rss_mb(stack.web.pid),
            "worker_after": self.rss_mb(stack.worker.pid, children=False),
            "jobs": len(completed),
        }
        # The demo at its default size (1024x1024, 4 steps), for scale: a few jobs.
        if self.fits("default-size queue run", 60):
            n = 8
            ids = [self.submit(stack, {"seed": i}, prompt=f"default job {i}") for i in range(n)]
            self.wait_jobs_done(stack, 60)
            conn = self.db(stack)
            try:
                marks = ",".join("?" * len(ids))
                rows = conn.execute(
                    f"SELECT started_at, completed_at FROM jobs WHERE id IN ({marks})", ids
                ).fetchall()
            finally:
                conn.close()
            span = (
                populate._parse(max(r[1] for r in rows)) - populate._parse(min(r[0] for r in rows))
            ).total_seconds()
            self.results["queue_default_size"] = {"jobs": n, "jobs_per_s": n / span if span else 0}
        self.close_stack(stack)

    def noop(self) -> None:
        """Huey's own rate: no-op tasks through the Procfile's worker line on a SqliteHuey."""
        n = self.args.noop_tasks
        path = self.tmp / "noop" / "huey.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_NOOP_DB"] = str(path)
        module = (
            importlib.reload(sys.modules["bench.noop"])
            if "bench.noop" in sys.modules
            else importlib.import_module("bench.noop")
        )
        for i in range(n):
            module.noop(i)
        huey = module.huey
        stack = self.stack("noop", env={"BENCH_NOOP_DB": str(path)})
        stack.commands["worker"] = self.procfile["worker"].replace(
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
        self.close_stack(stack)
        if first is None or count:
            raise RuntimeError(f"no-op tasks not drained (left {count})")
        rate = first[1] / (end - first[0]) if end > first[0] else 0.0
        self.results["noop"] = {"tasks": n, "tasks_per_s": rate, "seconds": end - first[0]}
        log(f"huey no-op: {rate:.0f} tasks/s")

    def thumbs(self) -> None:
        import json
        import subprocess

        scratch = self.tmp / "thumbs"
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
        self.results["thumbs"] = json.loads(line.removeprefix("BENCHJSON "))
        ms = self.results["thumbs"]["ms"]
        log(
            f"thumbnail 2048: darkroom {ms['darkroom_make_thumbnail']['median']:.1f} ms, "
            f"pillow {ms['pillow_thumbnail']['median']:.1f} ms"
        )

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        self.results["meta"] = sysinfo.collect(ROOT)
        self.results["meta"]["tool"] = self.tool or self.results["meta"]["load_tool"]
        self.results["options"] = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()
        }
        log(f"load generator: {self.results['meta']['tool']}; temp folder {self.tmp}")
        self.start_idle_stacks()
        api = self.prepare_api_stack()
        media_id, static_path, size = self.prepare_media(api)
        self.idle_stacks_ready()
        base = self.start_baselines()
        phases: list[tuple[str, float, Callable[[], None]]] = [
            (
                "throughput",
                a.rounds * 5 * (a.duration + 0.3 + SETTLE_SECONDS) + 10,
                lambda: self.throughput(base, api),
            ),
            (
                "media download",
                a.rounds * 2 * a.duration + 5,
                lambda: self.media(base, api, media_id, static_path, size),
            ),
            ("generate with worker", a.duration + 10, lambda: self.generate_with_worker(api)),
        ]
        for name, cost, fn in phases:
            if self.fits(name, cost + 60):
                fn()
            self.after_idle_samples()
        template_db = self.tmp / "template.db"
        populate.empty_copy(api.instance / "darkroom.db", template_db)
        # The template must hold one real completed job with its media: copy them back in.
        self.copy_template_rows(api.instance / "darkroom.db", template_db)
        self.close_stack(base)
        self.close_stack(api)
        for name, cost, fn in (
            ("pages at 100 vs 100k jobs", 70, lambda: self.pages(template_db)),
            ("queue", 100, self.queue),
            ("huey no-op", 20, self.noop),
            ("thumbnails", 20, self.thumbs),
        ):
            if self.fits(name, cost):
                fn()
            self.after_idle_samples()
        self.after_idle_samples(final=True)
        self.results["idle"] = [
            {
                k: v
                for k, v in e.items()
                if k in ("idle_for", "latency", "cpu_pct_20s", "cpu_pct_whole")
            }
            for e in self.idle
            if "sampled" in e
        ]
        self.results["meta"]["loadavg_end"] = sysinfo.loadavg()
        self.results["elapsed_s"] = self.elapsed()
        return self.results

    @staticmethod
    def copy_template_rows(source: Path, target: Path) -> None:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            job = src.execute(
                "SELECT * FROM jobs WHERE status = 'completed' AND prompt = 'a default-size job'"
            ).fetchone()
            cols = [d[0] for d in src.execute("SELECT * FROM jobs LIMIT 0").description]
            media = src.execute("SELECT * FROM media WHERE job_id = ?", (job[0],)).fetchall()
            mcols = [d[0] for d in src.execute("SELECT * FROM media LIMIT 0").description]
        finally:
            src.close()
        dst = sqlite3.connect(target)
        try:
            dst.execute(
                f"INSERT INTO jobs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", job
            )
            dst.executemany(
                f"INSERT INTO media ({','.join(mcols)}) VALUES ({','.join('?' * len(mcols))})",
                media,
            )
            dst.commit()
        finally:
            dst.close()

    def close(self) -> None:
        self._sampler_stop.set()
        for stack in reversed(list(self.stacks)):
            try:
                stack.close()
            except Exception as exc:  # keep closing the others
                log(f"closing a stack failed: {exc}")
        self.stacks.clear()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    try:
        results = bench.run()
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
