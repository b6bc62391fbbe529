"""The `Bench` object every phase of `python -m bench.run` works through.

It owns the temporary folder, the stacks started in it, the results and the clock (the
time budget that makes phases be skipped rather than overrun), and measures a load run
together with the CPU time the web spent on it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import load, populate
from bench.load import LoadResult, Spec
from tests.procs import API, Stack, procfile_commands

ROOT = Path(__file__).resolve().parent.parent
HIGH_LIMIT = "100000000/minute"
# The demo model at its fastest: no pause per step, one step, the smallest picture.
TINY = {"num_inference_steps": 1, "width": 128, "height": 128, "num_outputs": 1}
ACTIVE = ("pending", "processing", "retrying")
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
    """One timestamped progress line on stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def job_body(prompt: str, params: dict[str, Any] = TINY) -> dict[str, Any]:
    """The body of `POST /api/v1/jobs/generate` for a demo job."""
    return {"prompt": prompt, "model": "demo", "parameters": params}


def rss_mb(pid: int, children: bool = True) -> dict[str, float]:
    """Resident memory in MB of a process (and of each of its children), with the total."""
    proc = psutil.Process(pid)
    out = {"main": proc.memory_info().rss / 2**20}
    if children:
        for i, child in enumerate(proc.children(recursive=True)):
            out[f"child{i + 1}"] = child.memory_info().rss / 2**20
    out["total"] = sum(out.values())
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) one process has used."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


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


def wait_http(stack: Stack, path: str, timeout: float = 60) -> None:
    """Wait until `path` answers 200 (for the baselines, which have no health route)."""
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


def submit(stack: Stack, params: dict[str, Any], prompt: str = "bench job") -> str:
    """Submit one demo job through the API; its id."""
    r = stack.post(f"{API}/jobs/generate", json=job_body(prompt, params))
    if r.status_code != 201:
        raise RuntimeError(f"submit answered {r.status_code}: {r.text[:300]}")
    return str(r.json()["id"])


def status_paths(ids: list[str]) -> tuple[str, ...]:
    """The status paths of jobs, which a load run reads in turn."""
    return tuple(f"{API}/jobs/status/{i}" for i in ids)


def count_active(stack: Stack) -> int:
    """Jobs not finished yet (pending, processing or retrying)."""
    marks = ",".join("?" * len(ACTIVE))
    return int(stack.db_rows(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", *ACTIVE)[0][0])


def wait_jobs_done(stack: Stack, timeout: float) -> bool:
    """Wait until no job is left unfinished; False when `timeout` ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_active(stack) == 0:
            return True
        time.sleep(0.05)
    return False


def start_latency(stack: Stack, timeout: float = 20) -> dict[str, float]:
    """Submit one job; milliseconds from the POST (sent and returned) to its started_at."""
    sent = time.time()
    job_id = submit(stack, TINY, prompt="latency probe")
    returned = time.time()
    # One connection polled every 10 ms, so the poll itself adds as little as it can.
    uri = f"file:{stack.instance / 'darkroom.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=15)) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = conn.execute("SELECT started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row and row[0]:
                started = populate.parse_stamp(row[0]).timestamp()
                return {
                    "from_return_ms": (started - returned) * 1000,
                    "from_send_ms": (started - sent) * 1000,
                    "post_ms": (returned - sent) * 1000,
                }
            time.sleep(0.01)
    raise RuntimeError(f"job {job_id} did not start in {timeout}s\n{stack.logs()}")


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
        self.closing = threading.Event()  # set by close(): background samplers stop
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

    def remaining(self) -> float:
        """Seconds left of the budget."""
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the run started."""
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
        before = web_cpu(stack)
        result = load.run(
            stack.base_url,
            spec,
            connections=connections,
            duration=duration,
            threads=min(2, connections),
            tool=self.tool,
        )
        spent = web_cpu(stack) - before
        if result.requests:
            result.server_cpu_ms = 1000 * spent / result.requests
        return result

    def stack(self, name: str, *, env: dict[str, str] | None = None) -> Stack:
        """A Darkroom stack (not started) with limits out of the way and the demo at full speed."""
        extra = {
            "DARKROOM_RATE_LIMIT_CREATE": HIGH_LIMIT,
            "DARKROOM_RATE_LIMIT_STATUS": HIGH_LIMIT,
            "DARKROOM_RATE_LIMIT_POLL": HIGH_LIMIT,
            "DARKROOM_RATE_LIMIT_SEARCH": HIGH_LIMIT,
            "DARKROOM_RATE_LIMIT_UPLOAD": HIGH_LIMIT,
            "DARKROOM_DEMO_STEP_SECONDS": "0",
        }
        extra.update(env or {})
        stack = Stack(self.tmp / name, step_seconds=0, env=extra)
        self.stacks.append(stack)
        return stack

    def running_stack(self, name: str) -> Stack:
        """A Darkroom stack with its web live and its worker reporting."""
        return self.start(self.stack(name))

    def start(self, stack: Stack) -> Stack:
        """Start a stack's web and worker; return it when the web is live and the worker reports."""
        stack.start_web(wait=False)
        stack.start_worker()
        stack.wait_live(90)
        stack.wait_for_worker(90)
        return stack

    def close_stack(self, stack: Stack) -> None:
        """Stop a stack's processes before the end of the run."""
        stack.close()
        if stack in self.stacks:
            self.stacks.remove(stack)

    def close(self) -> None:
        """Stop every process the run started; remove the temporary folder unless --keep."""
        self.closing.set()
        for stack in reversed(list(self.stacks)):
            try:
                stack.close()
            except Exception as exc:  # keep closing the others
                log(f"closing a stack failed: {exc}")
        self.stacks.clear()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
