"""The OpenAI-compatible face (`/v1`): what it adds between a job's completion and the
answer reaching the client.

On a stack of its own (the API stack's queue holds the backlog the throughput runs left),
with the worker running, `FACADE_REQUESTS` demo jobs at the smallest size are asked for
through `POST /v1/images/generations`, one after the other, as an OpenAI client asks. For
each, the client notes when the answer arrived; the job's `completed_at` (written by the
worker as it recorded the outputs, read from the database with its microseconds) says when
the picture was ready. The difference is the face's overhead: noticing the end (it reads
the job's status every 50 ms), reading the job, building the answer and sending it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import requests

from bench.harness import Bench, log
from bench.load import percentile
from tests.procs import Stack

FACADE_REQUESTS = 30
TIMEOUT = 60.0


def cost(bench: Bench) -> float:
    """About how many seconds the phase takes: a stack's start, then the requests."""
    return 20 + FACADE_REQUESTS * 0.5


def _completed_at(stack: Stack, job_id: str) -> float | None:
    rows = stack.db_rows("SELECT completed_at FROM jobs WHERE id = ?", job_id)
    if not rows or rows[0][0] is None:
        return None
    return datetime.fromisoformat(str(rows[0][0])).replace(tzinfo=UTC).timestamp()


def measure(bench: Bench) -> None:
    """The overhead of each of `FACADE_REQUESTS` generations through the face."""
    api = bench.running_stack("facade")
    session = requests.Session()
    body = {"prompt": "facade probe", "model": "demo", "size": "128x128"}
    samples: list[dict[str, Any]] = []
    errors = 0
    try:
        for index in range(FACADE_REQUESTS):
            sent = time.time()
            try:
                response = session.post(
                    api.url("/v1/images/generations"),
                    json={**body, "prompt": f"facade probe {index}"},
                    timeout=TIMEOUT,
                )
            except requests.RequestException as exc:
                log(f"facade request {index} failed: {exc}")
                errors += 1
                continue
            received = time.time()
            if response.status_code != 200:
                errors += 1
                continue
            job_id = api.get("/api/v1/jobs?per_page=1").json()["jobs"][0]["id"]
            done = _completed_at(api, job_id)
            if done is None:
                errors += 1
                continue
            samples.append(
                {"overhead_ms": (received - done) * 1000, "total_ms": (received - sent) * 1000}
            )
    finally:
        bench.close_stack(api)
    overheads = [s["overhead_ms"] for s in samples]
    found = {
        "requests": FACADE_REQUESTS,
        "errors": errors,
        "samples": samples,
        "p50_ms": percentile(overheads, 50) if overheads else None,
        "p95_ms": percentile(overheads, 95) if overheads else None,
        "total_p50_ms": percentile([s["total_ms"] for s in samples], 50) if samples else None,
    }
    bench.results["facade"] = found
    if overheads:
        log(
            f"facade: completion -> answer p50 {found['p50_ms']:.1f} ms, "
            f"p95 {found['p95_ms']:.1f} ms, {errors} errors"
        )
