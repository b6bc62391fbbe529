"""Webhook deliveries never take generation capacity (the Procfile's real processes).

Receivers that accept a delivery and never answer used to hold the consumer's worker
threads, the ones that run generations, for the whole delivery timeout each: six of them
pushed an unrelated half-second job past forty seconds. Deliveries now run on a bounded
pool of their own (`DARKROOM_WEBHOOK_CONCURRENCY`) with a cap per destination
(`DARKROOM_WEBHOOK_PER_HOST`). These tests time a one-step job alone and while twenty
receivers hang, count how many requests wait at the receivers at once (each receiver notes
when the sender gives up), and check that a killed or stopped consumer loses no delivery.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.procs import API, Stack, running_stack
from tests.webhook_receiver import Received, Receiver, Reply
from webapp.config import Defaults

pytestmark = pytest.mark.e2e

POOL = Defaults.WEBHOOK_CONCURRENCY
PER_HOST = Defaults.WEBHOOK_PER_HOST
TIMEOUT = 5.0  # long enough to hang through the measurements, short enough to see it end
SMALL = {"width": 128, "height": 128, "num_inference_steps": 1}
ENV = {
    "DARKROOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "DARKROOM_WEBHOOK_CONNECT_TIMEOUT": "1",
    "DARKROOM_WEBHOOK_TIMEOUT": str(TIMEOUT),
    "DARKROOM_WEBHOOK_RETRY_DELAYS": "1,1,1",
    # A delivery a kill cut off goes back in the queue at the restart, not a minute later.
    "DARKROOM_STALE_QUEUE_SECONDS": "1",
}
# A receiver notes a hang-up a moment after the sender closed its socket, and the pool fills
# the freed place within milliseconds: a request arriving this soon after another's hang-up
# counts as following it. (A cap that did not hold would show an overlap of seconds.)
NOTICE = 0.25


# -- helpers ------------------------------------------------------------------------------


def timed_job(stack: Stack, prompt: str) -> float:
    """Run a one-step job: seconds from submission until its status says completed.

    (The status's own `started_at` and `completed_at` are whole seconds: too coarse here.)
    """
    started = time.monotonic()
    job_id = stack.submit(prompt, parameters=SMALL)["id"]
    body = stack.wait_terminal([job_id], timeout=90, interval=0.02)[job_id]
    assert body["status"] == "completed", body
    return time.monotonic() - started


def waiting_at(requests: Iterable[Received], moment: float) -> int:
    """How many of these requests waited for an answer at `moment` (monotonic)."""
    return sum(
        1
        for r in requests
        if r.arrived_monotonic <= moment and (r.hung_up is None or r.hung_up - NOTICE > moment)
    )


def most_at_once(requests: list[Received]) -> int:
    """The most requests that waited for an answer at the same moment."""
    return max((waiting_at(requests, r.arrived_monotonic) for r in requests), default=0)


def webhook_log(stack: Stack, job_id: str) -> dict[str, Any]:
    """The job's one delivery, as `GET /api/v1/jobs/{id}/webhooks` lists it."""
    [record] = stack.get(f"{API}/jobs/{job_id}/webhooks").json()["deliveries"]
    return dict(record)


def timed_out(stack: Stack, job_ids: list[str]) -> list[str]:
    """Jobs whose delivery has an attempt recorded as timed out, and waits to be retried."""
    found = []
    for job_id in job_ids:
        record = webhook_log(stack, job_id)
        errors = [a["error"] for a in record["attempts"] if a["status_code"] is None]
        if "timed out" in errors and record["status"] in ("retrying", "delivering"):
            found.append(job_id)
    return found


def delivered(stack: Stack, job_ids: list[str]) -> bool:
    return all(webhook_log(stack, job_id)["status"] == "delivered" for job_id in job_ids)


def queue_taken(stack: Stack) -> bool:
    """True once the consumer has taken every message waiting in the queue file."""
    conn = sqlite3.connect(f"file:{stack.instance / 'huey.db'}?mode=ro", uri=True, timeout=15)
    try:
        return conn.execute("SELECT count(*) FROM task").fetchone() == (0,)
    finally:
        conn.close()


def event_statuses(stack: Stack) -> list[tuple[str, int]]:
    """How many webhook events are in each status."""
    rows = stack.db_rows("SELECT status, count(*) FROM webhook_events GROUP BY status")
    return sorted((str(status), int(count)) for status, count in rows)


# -- the figure ---------------------------------------------------------------------------


def test_a_job_keeps_its_idle_speed_while_20_receivers_hang(tmp_path: Path) -> None:
    """Twenty deliveries to five hanging receivers: a one-step job is not slowed by them."""
    with contextlib.ExitStack() as hooks_open:
        hooks = [hooks_open.enter_context(Receiver(default=Reply(hang=True))) for _ in range(5)]
        with running_stack(tmp_path, step_seconds=0.25, env=ENV) as stack:
            stack.wait_for_worker()
            timed_job(stack, "warm-up: the first job loads what later ones reuse")
            idle = [timed_job(stack, f"alone {n}") for n in range(3)]

            hanging = [
                stack.submit(f"hook {n}", parameters=SMALL, webhook_url=hooks[n % 5].url())["id"]
                for n in range(20)
            ]
            stack.wait_terminal(hanging, timeout=60)

            def requests() -> list[Received]:
                return [r for hook in hooks for r in hook.requests]

            def pool_full() -> bool:
                return waiting_at(requests(), time.monotonic()) >= POOL

            loaded = []
            for n in range(3):
                stack.wait_until("every delivery thread to hang", pool_full, 3 * TIMEOUT, 0.01)
                loaded.append(timed_job(stack, f"while receivers hang {n}"))

            alone, beside_hangs = statistics.median(idle), statistics.median(loaded)
            print(
                f"one-step job, submission to completed: alone {alone:.3f}s "
                f"{[round(s, 3) for s in idle]}, while 20 receivers hang {beside_hangs:.3f}s "
                f"{[round(s, 3) for s in loaded]}"
            )
            # Twice the idle time, or on a loaded box a second more, whichever is larger.
            assert beside_hangs <= max(2 * alone, alone + 1.0), (idle, loaded)

            # The hanging deliveries are cut off at the timeout and wait for their retry.
            stack.wait_until(
                f"{POOL} deliveries to be recorded as timed out",
                lambda: len(timed_out(stack, hanging)) >= POOL,
                3 * TIMEOUT,
                0.2,
            )
            # The pool was full, and never fuller; no receiver had more than its share.
            assert most_at_once(requests()) == POOL
            for hook in hooks:
                assert most_at_once(hook.requests) <= PER_HOST


# -- the cap per destination --------------------------------------------------------------


def test_one_host_holds_at_most_its_share_of_the_pool(tmp_path: Path) -> None:
    """Six deliveries to one hanging host: two at a time, and another host still gets its."""
    with (
        Receiver(default=Reply(hang=True)) as slow,
        Receiver() as healthy,
        running_stack(tmp_path, env=ENV) as stack,
    ):
        stack.wait_for_worker()
        slow_jobs = [
            stack.submit(f"slow {n}", parameters=SMALL, webhook_url=slow.url())["id"]
            for n in range(6)
        ]
        slow.wait_for(PER_HOST, timeout=30)
        quick = stack.submit("quick", parameters=SMALL, webhook_url=healthy.url())["id"]
        [request] = healthy.wait_for(1, timeout=30)
        # It went out while the slow host still held both of its deliveries.
        assert waiting_at(slow.requests, request.arrived_monotonic) == PER_HOST
        stack.wait_until("the quick delivery", lambda: delivered(stack, [quick]), 10)

        # Two rounds of two: each cut off at the timeout, then the next two go out.
        stack.wait_until(
            "four slow deliveries to time out",
            lambda: len(timed_out(stack, slow_jobs)) >= 2 * PER_HOST,
            4 * TIMEOUT,
            0.2,
        )
        assert len(slow.requests) >= 2 * PER_HOST
        assert most_at_once(slow.requests) == PER_HOST


# -- nothing is lost ----------------------------------------------------------------------


def test_deliveries_cut_off_or_waiting_at_a_kill_9_are_sent_after_the_restart(
    tmp_path: Path,
) -> None:
    """Two deliveries in flight and one waiting its turn in memory when the consumer dies."""
    with (
        Receiver(default=Reply(hang=True)) as hook,
        running_stack(tmp_path, env=ENV) as stack,
    ):
        job_ids = [
            stack.submit(f"cut off {n}", parameters=SMALL, webhook_url=hook.url())["id"]
            for n in range(PER_HOST + 1)
        ]
        stack.wait_terminal(job_ids, timeout=30)
        hook.wait_for(PER_HOST, timeout=30)
        stack.wait_until("the last delivery to be taken", lambda: queue_taken(stack))
        time.sleep(0.2)  # from the queue to the pool: a moment
        assert len(hook.requests) == PER_HOST
        assert event_statuses(stack) == [("delivering", PER_HOST), ("pending", 1)]
        stack.kill_worker(signal.SIGKILL)
        hook.default = Reply()
        time.sleep(1.0)  # past DARKROOM_STALE_QUEUE_SECONDS: the restart re-queues them all
        stack.start_worker()

        stack.wait_until("every delivery to land", lambda: delivered(stack, job_ids), 30, 0.2)
        by_id: dict[str | None, list[Received]] = {}
        for request in hook.requests:
            by_id.setdefault(request.header("webhook-id"), []).append(request)
        assert len(by_id) == len(job_ids)
        assert sorted(len(sent) for sent in by_id.values()) == [1] + [2] * PER_HOST
        for sent in by_id.values():
            assert len({r.body for r in sent}) == 1
        # The attempts the kill cut off were never recorded; the ones after the restart were.
        for job_id in job_ids:
            assert [a["status_code"] for a in webhook_log(stack, job_id)["attempts"]] == [200]
        assert "the claim of a stopped worker was released" in stack.log_text("worker")


def test_sigint_waits_for_hanging_deliveries_no_longer_than_their_timeout(
    tmp_path: Path,
) -> None:
    """The graceful stop lets deliveries in flight end (cut off at the timeout, recorded)
    and puts the one waiting for its turn back in the queue."""
    with (
        Receiver(default=Reply(hang=True)) as one,
        Receiver(default=Reply(hang=True)) as two,
        running_stack(tmp_path, env=ENV) as stack,
    ):
        hooks = [one, two] * PER_HOST + [one]
        job_ids = [
            stack.submit(f"stop {n}", parameters=SMALL, webhook_url=hook.url())["id"]
            for n, hook in enumerate(hooks)
        ]
        in_flight, waiting = job_ids[:-1], job_ids[-1]
        stack.wait_terminal(job_ids, timeout=30)
        stack.wait_until(
            "the deliveries to hang",
            lambda: len(one.requests) + len(two.requests) == len(in_flight),
            30,
        )
        stack.wait_until("the last delivery to be taken", lambda: queue_taken(stack))
        time.sleep(0.2)  # from the queue to the pool: a moment
        assert stack.worker is not None
        consumer = stack.worker
        stack.kill_worker(signal.SIGINT)
        signalled = time.monotonic()
        assert consumer.wait(TIMEOUT + 20) == 0
        took = time.monotonic() - signalled
        log = stack.log_of(consumer)
        assert "All workers have stopped" in log, log
        assert "1 waiting webhook deliveries put back in the queue" in log, log
        # Bounded by the delivery timeout, not by the receivers (which never answer); the
        # slack is for a loaded machine (the whole suite and more on two cores: 7.4 s seen).
        assert took < TIMEOUT + 5.0, f"the stop took {took:.2f}s"
        # Each was cut off at the timeout and recorded before the process ended.
        assert event_statuses(stack) == [("pending", 1), ("retrying", len(in_flight))]
        assert sorted(timed_out(stack, in_flight)) == sorted(in_flight)
        assert webhook_log(stack, waiting)["attempts"] == []

        one.default = two.default = Reply()
        stack.start_worker()
        stack.wait_until("every delivery to land", lambda: delivered(stack, job_ids), 30, 0.2)
