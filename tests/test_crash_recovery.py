"""Crash recovery with the real consumer: a killed or stalled worker loses no job.

Huey deletes a message when a worker takes it, so a worker killed mid-job takes the job's
message with it. These tests kill the Procfile's worker with SIGKILL (or freeze it with
SIGSTOP), start another, and check that the jobs table, the queue of record, brings every
job to `completed` exactly once.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.procs import Stack, kill, process_state, running_stack

pytestmark = pytest.mark.e2e

STEP_SECONDS = 0.2
STEPS = 6  # ~1.2 s a job
# Recovered jobs wait RETRY_BASE_SECONDS before their next attempt; keep that short here.
# A message taken by the killed worker before it claimed its job is re-sent by the start-up
# reaper once the job has waited STALE_QUEUE_SECONDS.
FAST_RETRIES = {
    "DARKROOM_RETRY_BASE_SECONDS": "0.2",
    "DARKROOM_RETRY_MAX_SECONDS": "1",
    "DARKROOM_STALE_QUEUE_SECONDS": "2",
}


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start web and worker on a fresh folder with the given lease; all stopped at teardown."""
    with contextlib.ExitStack() as stacks:

        def start(lease_seconds: float) -> Stack:
            return stacks.enter_context(
                running_stack(
                    tmp_path,
                    step_seconds=STEP_SECONDS,
                    lease_seconds=lease_seconds,
                    env=FAST_RETRIES,
                )
            )

        yield start


def submit_batch(stack: Stack, count: int = 8, steps: int = STEPS) -> dict[str, int]:
    """Submit jobs of one or two outputs; return {job id: num_outputs}."""
    jobs = {}
    for n in range(count):
        outputs = 1 + n % 2
        parameters = {
            "num_inference_steps": steps,
            "num_outputs": outputs,
            "width": 256,
            "height": 256,
            "seed": n,
        }
        jobs[stack.submit(f"crash test job {n}", parameters=parameters)["id"]] = outputs
    return jobs


def running_now(stack: Stack, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs the current worker is running right now (claimed by it, with some progress).

    A job a crash left in `processing` also shows progress, so the claim's worker id is
    read from the database to tell the current worker's jobs from the dead one's.
    """
    assert stack.worker is not None
    bodies = stack.statuses(job_ids)
    active = [j for j, b in bodies.items() if b["status"] == "processing" and b["progress"] > 0]
    mine = f":{stack.worker.pid}"
    return {
        job_id: bodies[job_id]
        for job_id, (_, worker_id) in leases(stack, active).items()
        if worker_id.endswith(mine) and bodies[job_id]["progress"] < 100
    }


def leases(stack: Stack, job_ids: list[str]) -> dict[str, tuple[datetime, str]]:
    """Lease expiry and worker id of the jobs that are processing, from the database file."""
    if not job_ids:
        return {}
    marks = ",".join("?" * len(job_ids))
    rows = stack.db_rows(
        f"SELECT id, lease_expires_at, worker_id FROM jobs WHERE id IN ({marks})"
        " AND status = 'processing'",
        *job_ids,
    )
    return {
        job_id: (datetime.fromisoformat(expires).replace(tzinfo=UTC), worker)
        for job_id, expires, worker in rows
    }


def crash_worker(
    stack: Stack, job_ids: list[str], must_include: set[str] | None = None
) -> set[str]:
    """SIGKILL the worker mid-job and return the jobs it left in `processing`."""
    must_include = must_include or set()
    stack.wait_until(
        "a job to be running",
        lambda: (running := running_now(stack, job_ids)) and must_include <= running.keys(),
        timeout=30,
        interval=0.02,
    )
    assert stack.worker is not None
    killed = stack.worker.pid
    stack.kill_worker(signal.SIGKILL)  # the whole process group; waits until it is gone
    crashed = {j for j, body in stack.statuses(job_ids).items() if body["status"] == "processing"}
    assert crashed, "the kill came after every running job had finished"
    # Only the killed worker's claims are left: earlier crashes were all recovered.
    held = leases(stack, sorted(crashed))
    assert held.keys() == crashed
    assert all(worker_id.endswith(f":{killed}") for _, worker_id in held.values()), held

    # Nothing else touches those jobs while no worker runs: they stay where the crash left them.
    before = stack.statuses(crashed)
    time.sleep(1.0)
    after = stack.statuses(crashed)
    for job_id in crashed:
        assert after[job_id]["status"] == "processing"
        assert after[job_id]["progress"] == before[job_id]["progress"]
        assert after[job_id]["media"] is None
    return crashed


def check_all_completed(
    stack: Stack, jobs: dict[str, int], crashes: dict[str, int], timeout: float = 45
) -> dict[str, dict[str, Any]]:
    """Every job ends completed with its outputs, each crash counted as one retry."""
    done = stack.wait_terminal(list(jobs), timeout=timeout)
    stored = stack.stored_media_ids()
    for job_id, outputs in jobs.items():
        body = done[job_id]
        assert body["status"] == "completed", body
        assert body["progress"] == 100.0
        assert len(body["media"]) == outputs, body
        assert body["retry_count"] == crashes.get(job_id, 0), (crashes, body)
        for item in body["media"]:
            assert item["id"] in stored
            assert stack.get(item["url"]).status_code == 200
    listing = stack.get("/api/v1/jobs", params={"status": "processing"}).json()
    assert listing["total"] == 0
    return done


def test_killed_worker_recovers_at_restart_without_waiting_for_the_lease(
    launch: Callable[..., Stack],
) -> None:
    """kill -9 mid-job, restart: the start-up reaper sees the old pid is dead, not the lease."""
    stack = launch(lease_seconds=60)
    dead_pid = stack.worker.pid
    jobs = submit_batch(stack)
    crashed = crash_worker(stack, list(jobs))
    held = leases(stack, sorted(crashed))
    for expires, worker_id in held.values():
        assert worker_id.endswith(f":{dead_pid}")
        left = (expires - datetime.now(UTC)).total_seconds()
        assert left > 45, "the lease must still be far from expiring"

    stack.start_worker()
    check_all_completed(stack, jobs, dict.fromkeys(crashed, 1))
    # Everything was recovered and finished while the dead worker's leases still held.
    assert datetime.now(UTC) < min(expires for expires, _ in held.values())
    assert "reaper: {'requeued': " in stack.log_of(stack.worker)


def test_worker_killed_twice(launch: Callable[..., Stack]) -> None:
    """Two crashes in a row, the second one hitting a job already recovered once."""
    stack = launch(lease_seconds=60)
    jobs = submit_batch(stack)
    crashes: dict[str, int] = {}
    first = crash_worker(stack, list(jobs))
    for job_id in first:
        crashes[job_id] = crashes.get(job_id, 0) + 1

    stack.start_worker()
    # Wait for one of the recovered jobs to run again, and kill the worker under it.
    target = {sorted(first)[0]}
    second = crash_worker(stack, list(jobs), must_include=target)
    assert target <= second
    for job_id in second:
        crashes[job_id] = crashes.get(job_id, 0) + 1

    stack.start_worker()
    check_all_completed(stack, jobs, crashes)
    assert max(crashes.values()) == 2


def test_stalled_worker_is_replaced_once_its_lease_expires(launch: Callable[..., Stack]) -> None:
    """A frozen worker's jobs go to another worker by lease expiry alone, and stay there.

    SIGSTOP keeps the worker's process alive, so the reaper cannot call it dead; only the
    short lease (3 s) lets the next worker take the jobs over. When the frozen worker wakes,
    its writes are refused by the lease fence and it gives up without touching the jobs.
    """
    lease = 3
    stack = launch(lease_seconds=lease)
    frozen = stack.worker
    jobs = submit_batch(stack, count=2, steps=10)  # ~2 s a job
    stack.wait_until(
        "both jobs to be running",
        lambda: len(running_now(stack, list(jobs))) == 2,
        timeout=15,
        interval=0.02,
    )
    # Freeze the worker outside any database transaction, so it holds no lock.
    for _ in range(50):
        stack.kill_worker(signal.SIGSTOP)
        stack.wait_until("the worker to stop", lambda: process_state(frozen.pid) == "T")
        if stack.databases_unlocked():
            break
        stack.kill_worker(signal.SIGCONT)
        time.sleep(0.05)
    else:
        pytest.fail("the worker kept holding a database lock")

    held = leases(stack, list(jobs))
    assert held, "both jobs finished before the worker froze"
    assert all(worker_id.endswith(f":{frozen.pid}") for _, worker_id in held.values())
    latest = max(expires for expires, _ in held.values())
    wait = (latest - datetime.now(UTC)).total_seconds() + 0.3
    assert 0 < wait < lease + 1
    time.sleep(wait)
    for job_id in held:
        assert stack.status(job_id)["status"] == "processing"  # expired; nobody looked yet

    assert frozen.poll() is None  # alive (stopped): not a dead local pid
    stack.start_worker()
    done = check_all_completed(stack, jobs, dict.fromkeys(held, 1))
    media_ids = {m["id"] for body in done.values() for m in body["media"]}

    # Wake the frozen worker: its next write is fenced off, and it stops.
    kill(frozen, signal.SIGCONT)
    for job_id in held:
        stack.wait_until(
            f"the woken worker to give up job {job_id}",
            lambda job_id=job_id: (
                f"job {job_id} was cancelled or taken over" in stack.log_of(frozen)
            ),
            timeout=10,
        )
    after = stack.statuses(jobs)
    for job_id, body in after.items():
        assert body["status"] == "completed"
        assert body["retry_count"] == done[job_id]["retry_count"]
        assert body["media"] == done[job_id]["media"]
    assert stack.stored_media_ids() == media_ids
