"""Stacks left idle for the whole run: submit -> start after idling, and an idle worker's CPU.

They are started first and sampled between the other phases, as soon as each has idled for
`--idle-seconds`, so the wait costs the run almost nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil

from bench.harness import Bench, cpu_seconds, log, start_latency

# What each sample keeps in the results (the rest is the sampler's own bookkeeping).
KEPT = ("idle_for", "latency", "cpu_pct_20s", "cpu_pct_whole")


class IdleStacks:
    """The idle stacks of one run and the samples of their workers' CPU time."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.entries: list[dict[str, Any]] = []

    def start(self) -> None:
        """Start the stacks without waiting (their web is 1 process); ready() waits."""
        n = self.bench.args.idle_stacks
        if n <= 0:
            return
        log(f"starting {n} idle stacks (web with WEB_CONCURRENCY=1 + worker)")
        for i in range(n):
            stack = self.bench.stack(f"idle{i}", env={"WEB_CONCURRENCY": "1"})
            stack.start_web(wait=False)
            stack.start_worker()
            self.entries.append({"stack": stack, "samples": []})

    def ready(self) -> None:
        """Wait for every idle stack; from now on their workers idle and are sampled."""
        for entry in self.entries:
            stack = entry["stack"]
            stack.wait_live(90)
            stack.wait_for_worker(90)
            entry["ready"] = time.monotonic()
            assert stack.worker is not None
            entry["pid"] = stack.worker.pid
        threading.Thread(target=self._sample_cpu, daemon=True, name="cpu-sampler").start()
        log("idle stacks ready; their workers now idle")

    def _sample_cpu(self) -> None:
        while not self.bench.closing.wait(1.0):
            now = time.monotonic()
            for entry in self.entries:
                if "sampled" in entry:
                    continue
                with contextlib.suppress(psutil.Error):
                    entry["samples"].append((now, cpu_seconds(entry["pid"])))

    def sample_due(self, final: bool = False) -> None:
        """Sample every idle stack that has idled long enough (all of them when `final`)."""
        for entry in self.entries:
            if "sampled" in entry:
                continue
            wait = self.bench.args.idle_seconds - (time.monotonic() - entry["ready"])
            if wait > 0:
                if not final:
                    continue
                # The end of the run: wait for the idle time, as far as the budget allows.
                wait = min(wait, max(0.0, self.bench.remaining() - 20))
                if wait > 0:
                    log(f"waiting {wait:.0f}s for the idle workers")
                    time.sleep(wait)
            self._sample(entry)

    def _sample(self, entry: dict[str, Any]) -> None:
        stack = entry["stack"]
        idle_for = time.monotonic() - entry["ready"]
        # CPU while idle: over the last 20 s and over the whole idle time (after 5 s).
        cpu_now = cpu_seconds(entry["pid"])
        now = time.monotonic()
        samples = entry["samples"]
        w20 = [s for s in samples if s[0] <= now - 20]
        whole = [s for s in samples if s[0] >= entry["ready"] + 5]
        entry["cpu_pct_20s"] = 100 * (cpu_now - w20[-1][1]) / (now - w20[-1][0]) if w20 else None
        entry["cpu_pct_whole"] = (
            100 * (cpu_now - whole[0][1]) / (now - whole[0][0]) if whole else None
        )
        entry["idle_for"] = idle_for
        entry["latency"] = start_latency(stack)
        entry["sampled"] = True
        log(
            f"after {idle_for:.0f}s idle: submit->start "
            f"{entry['latency']['from_return_ms']:.0f} ms, "
            f"idle CPU {entry['cpu_pct_20s'] or 0:.2f}% (20 s)"
        )
        self.bench.close_stack(stack)

    def results(self) -> list[dict[str, Any]]:
        """The samples taken, as the results keep them."""
        return [{k: v for k, v in e.items() if k in KEPT} for e in self.entries if "sampled" in e]
