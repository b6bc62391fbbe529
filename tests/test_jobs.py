"""The job state machine: claims, leases, fencing, retries, cancel races and the reaper."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import text

from tests.helpers import TEST_CONFIG, queued_job_ids, run_queue, submit
from webapp import attempts, jobs
from webapp.extensions import db, huey
from webapp.media import media_root, store_image
from webapp.models import DeliveryStatus, Job, JobStatus, Media, WebhookEvent, now_utc
from webapp.queue import enqueue_job
from webapp.runs import _Heartbeat
from webapp.signals import job_finished
from webapp.validation import JobCreate


def new_job(**parameters: object) -> Job:
    """Submit a demo job straight through the domain function."""
    request = JobCreate.model_validate({"prompt": "a lighthouse at dusk", "parameters": parameters})
    return jobs.submit_job(request)


def stored_outputs(count: int = 1) -> list:
    """Write real files to storage, as a worker would before finishing."""
    return [store_image(Image.new("RGB", (200, 100), "teal"), "png", 90) for _ in range(count)]


def reload(job_id: str) -> Job:
    """Read the job afresh: end the session's read snapshot first (SQLite WAL isolation)."""
    db.session.commit()
    return db.session.get(Job, job_id, populate_existing=True)


def expire_lease(job_id: str) -> None:
    job = reload(job_id)
    job.lease_expires_at = now_utc() - timedelta(seconds=1)
    db.session.commit()


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0]


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class TestClaim:
    def test_a_job_is_claimed_once(self, app: Flask) -> None:
        job = new_job()
        first = attempts.claim_job(job.id, "host:1")
        second = attempts.claim_job(job.id, "host:2")
        assert first is not None and second is None
        claimed = reload(job.id)
        assert claimed.status == "processing"
        assert claimed.lease_token == first.token
        assert claimed.worker_id == "host:1"
        assert claimed.started_at is not None and claimed.lease_expires_at > now_utc()

    def test_concurrent_claims_have_one_winner(self, app: Flask) -> None:
        job_id = new_job().id
        db.session.commit()  # no read snapshot stays open while the threads write
        winners: list[attempts.Claim] = []
        barrier = threading.Barrier(8)

        def contend(n: int) -> None:
            with app.app_context():
                barrier.wait()
                claim = attempts.claim_job(job_id, f"host:{n}")
                if claim:
                    winners.append(claim)
                db.session.remove()

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        assert reload(job_id).lease_token == winners[0].token

    def test_terminal_and_not_yet_due_jobs_are_not_claimed(self, app: Flask) -> None:
        cancelled = new_job()
        jobs.cancel_job(cancelled.id)
        assert attempts.claim_job(cancelled.id) is None
        later = new_job()
        job = reload(later.id)
        job.status, job.run_after = "retrying", now_utc() + timedelta(minutes=5)
        db.session.commit()
        assert attempts.claim_job(later.id) is None
        assert attempts.claim_job("no-such-job") is None


class TestFencing:
    def test_a_stale_lease_cannot_write(self, app: Flask) -> None:
        job = new_job()
        stale = attempts.claim_job(job.id, "host:1")
        expire_lease(job.id)
        assert attempts.reap(set())["requeued"] == 1
        assert reload(job.id).status == "retrying"
        job_row = reload(job.id)
        job_row.run_after = None
        db.session.commit()
        fresh = attempts.claim_job(job.id, "host:2")
        assert fresh is not None
        # The first worker wakes up: every write it tries is refused.
        assert attempts.renew_lease(stale, progress=50) is False
        assert attempts.remember_provider_job_id(stale, "pred-1") is False
        outputs = stored_outputs()
        assert attempts.complete_job(stale, outputs) is False
        assert not (media_root() / outputs[0].storage_path).exists()
        assert attempts.fail_attempt(stale, "late failure", transient=False) is None
        current = reload(job.id)
        assert current.status == "processing" and current.lease_token == fresh.token
        assert current.progress == 0 and current.provider_job_id is None
        assert attempts.complete_job(fresh, stored_outputs())
        assert reload(job.id).status == "completed"

    def test_cancel_wins_over_a_late_result(self, app: Flask) -> None:
        job = new_job()
        claim = attempts.claim_job(job.id)
        jobs.cancel_job(job.id)
        outputs = stored_outputs(2)
        assert attempts.complete_job(claim, outputs) is False
        final = reload(job.id)
        assert final.status == "cancelled" and final.completed_at is not None
        assert db.session.query(Media).filter_by(job_id=job.id).count() == 0
        for out in outputs:
            assert not (media_root() / out.storage_path).exists()
            assert not (media_root() / out.thumbnail_path).exists()

    def test_a_finished_job_cannot_be_cancelled(self, app: Flask) -> None:
        job = new_job()
        claim = attempts.claim_job(job.id)
        assert attempts.complete_job(claim, stored_outputs())
        with pytest.raises(jobs.JobNotCancellable, match="completed state"):
            jobs.cancel_job(job.id)
        assert reload(job.id).status == "completed"

    def test_cancel_stops_a_running_demo_job(self, app: Flask, app_config: dict) -> None:
        app.config["DEMO_STEP_SECONDS"] = 0.05
        job = new_job(num_inference_steps=40)
        from webapp.tasks import run_job

        runner = threading.Thread(target=lambda: _run_in(app, run_job.call_local, job.id))
        runner.start()
        deadline = time.monotonic() + 10
        while reload(job.id).status != "processing" and time.monotonic() < deadline:
            time.sleep(0.02)
        jobs.cancel_job(job.id)
        runner.join(timeout=10)
        final = reload(job.id)
        assert final.status == "cancelled"
        assert final.media == []
        assert (
            not list((media_root() / "generated").glob("*"))
            if (media_root() / "generated").exists()
            else True
        )


def _run_in(app: Flask, fn, *args) -> None:
    with app.app_context():
        fn(*args)
        db.session.remove()


class TestRetries:
    def test_transient_failures_retry_then_fail(self, app: Flask) -> None:
        job = new_job()
        for attempt in range(1, 4):
            claim = attempts.claim_job(job.id)
            assert claim is not None, f"attempt {attempt} could not claim"
            status = attempts.fail_attempt(claim, "Replicate API error: 503", transient=True)
            assert status == "retrying"
            row = reload(job.id)
            assert row.retry_count == attempt and row.run_after > now_utc() - timedelta(seconds=1)
            assert row.lease_token is None
            time.sleep(0.06)  # RETRY_MAX_SECONDS is 0.05 in tests
        claim = attempts.claim_job(job.id)
        assert attempts.fail_attempt(claim, "Replicate API error: 503", transient=True) == "failed"
        final = reload(job.id)
        assert final.status == "failed" and final.completed_at is not None
        assert final.error_message == "Replicate API error: 503"
        assert final.error_details == {"retry_count": 3, "max_retries": 3}

    def test_a_retry_is_enqueued_with_its_delay(self, app: Flask) -> None:
        job = new_job()
        huey.flush()
        claim = attempts.claim_job(job.id)
        attempts.fail_attempt(claim, "timeout", transient=True)
        scheduled = [t.args[0] for t in huey.scheduled()] + queued_job_ids()
        assert job.id in scheduled

    def test_permanent_failure_does_not_retry(self, app: Flask) -> None:
        job = new_job()
        claim = attempts.claim_job(job.id)
        assert attempts.fail_attempt(claim, "Model not found", transient=False) == "failed"
        final = reload(job.id)
        assert final.retry_count == 0 and final.status == "failed"

    def test_retry_delay_backs_off_and_honours_retry_after(self, app: Flask) -> None:
        app.config.update(RETRY_BASE_SECONDS=2, RETRY_MAX_SECONDS=300)
        assert all(2 <= attempts.retry_delay(0) <= 2 for _ in range(5))
        assert all(2 <= attempts.retry_delay(3) <= 16 for _ in range(20))
        assert attempts.retry_delay(0, retry_after=30) == 30
        assert max(attempts.retry_delay(20) for _ in range(50)) <= 300


class TestReaper:
    def test_jobs_of_a_dead_local_worker_are_recovered_at_once(self, app: Flask) -> None:
        job = new_job()
        attempts.claim_job(job.id, f"{socket.gethostname()}:{dead_pid()}")
        # The lease is still valid: only the dead pid tells the reaper.
        assert reload(job.id).lease_expires_at > now_utc()
        counts = attempts.reap(set())
        assert counts["requeued"] == 1
        row = reload(job.id)
        assert row.status == "retrying" and row.retry_count == 1
        assert row.error_details is None and "stopped" in row.error_message

    def test_an_unreaped_killed_worker_counts_as_dead(self, app: Flask) -> None:
        # Under a PID 1 that never reaps (some containers), a killed worker stays a zombie.
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "Z" not in _proc_state(child.pid):
            time.sleep(0.02)
        try:
            job = new_job()
            attempts.claim_job(job.id, f"{socket.gethostname()}:{child.pid}")
            assert attempts.reap(set())["requeued"] == 1
        finally:
            child.wait()

    def test_a_live_worker_with_a_valid_lease_is_left_alone(self, app: Flask) -> None:
        job = new_job()
        attempts.claim_job(job.id)  # this process: alive
        other_host = new_job()
        attempts.claim_job(other_host.id, "another-host:1")
        assert attempts.reap(set()) == {"requeued": 0, "failed": 0, "reenqueued": 0}
        assert reload(job.id).status == "processing"
        assert reload(other_host.id).status == "processing"

    def test_a_crash_counts_as_an_attempt(self, app: Flask) -> None:
        job = new_job()
        row = reload(job.id)
        row.retry_count = row.max_retries
        db.session.commit()
        attempts.claim_job(job.id, "another-host:1")
        expire_lease(job.id)
        assert attempts.reap(set())["failed"] == 1
        final = reload(job.id)
        assert final.status == "failed"
        assert final.error_details["reason"] == "worker_lost"

    def test_lost_messages_are_enqueued_again(self, app: Flask) -> None:
        app.config["STALE_QUEUE_SECONDS"] = 0
        job = new_job()
        huey.flush()  # the doorbell rang but the message is gone
        assert attempts.reap(queued_job_ids() and set(queued_job_ids()))["reenqueued"] == 1
        assert queued_job_ids() == [job.id]
        # Known to be queued: not enqueued twice.
        assert attempts.reap(set(queued_job_ids()))["reenqueued"] == 0
        assert run_queue() == 1
        assert reload(job.id).status == "completed"

    def test_a_duplicate_message_is_harmless(self, app: Flask, client) -> None:
        created = submit(client, parameters={"width": 128, "height": 128})
        enqueue_job(created["id"])
        assert queued_job_ids() == [created["id"], created["id"]]
        assert run_queue() == 2
        row = reload(created["id"])
        assert row.status == "completed" and len(row.media) == 1


class TestProgressAndEstimate:
    def test_heartbeat_extends_the_lease(self, app: Flask) -> None:
        app.config["LEASE_SECONDS"] = 1.5
        job = new_job()
        claim = attempts.claim_job(job.id)
        first = reload(job.id).lease_expires_at
        beat = _Heartbeat(app, claim)
        beat.start()
        time.sleep(1.2)
        beat.stopped.set()
        beat.join()
        assert reload(job.id).lease_expires_at > first
        assert not beat.lost.is_set()

    def test_heartbeat_notices_a_lost_lease(self, app: Flask) -> None:
        app.config["LEASE_SECONDS"] = 1.5
        job = new_job()
        claim = attempts.claim_job(job.id)
        jobs.cancel_job(job.id)
        beat = _Heartbeat(app, claim)
        beat.start()
        beat.join(timeout=3)
        assert beat.lost.is_set()

    def test_progress_rises_step_by_step(self, app: Flask) -> None:
        app.config["DEMO_STEP_SECONDS"] = 0.25  # slower than the 0.2 s write throttle
        job = new_job(num_inference_steps=4, width=128, height=128)
        seen: list[float] = []
        from webapp.tasks import run_job

        runner = threading.Thread(target=lambda: _run_in(app, run_job.call_local, job.id))
        runner.start()
        while runner.is_alive():
            seen.append(reload(job.id).progress)
            time.sleep(0.05)
        seen.append(reload(job.id).progress)
        steps = sorted(set(seen))
        assert steps[0] == 0 and steps[-1] == 100
        assert {25.0, 50.0, 75.0} <= set(steps)
        assert seen == sorted(seen), "progress never goes backwards"

    def test_estimate_follows_the_queue_and_history(self, app: Flask) -> None:
        app.config["WORKER_CONCURRENCY"] = 1
        first = new_job()
        lone = jobs.estimate_seconds(first)
        for _ in range(9):
            last = new_job()
        assert jobs.estimate_seconds(last) > lone
        # Recent runs of 30 s each make the estimate follow them.
        for job in db.session.query(Job).all():
            job.status = "completed"
            job.started_at = now_utc() - timedelta(seconds=30)
            job.completed_at = now_utc()
        db.session.commit()
        waiting = new_job()
        assert 30 <= jobs.estimate_seconds(waiting) <= 31

    def test_duration_cache_belongs_to_its_app(self, app: Flask, tmp_path) -> None:
        # Another app in the same process (another database) caches its own mean for the
        # model; this app's estimate must still come from this app's history.
        from webapp import create_app

        other = create_app(
            {**TEST_CONFIG, "INSTANCE_PATH": str(tmp_path / "other"), "ESTIMATE_CACHE_SECONDS": 600}
        )
        with other.app_context():
            cached_elsewhere = jobs.average_duration("demo")
            db.session.remove()
            db.engine.dispose()
        new_job(), new_job()
        for job in db.session.query(Job).all():
            job.status = "completed"
            job.started_at = now_utc() - timedelta(seconds=45)
            job.completed_at = now_utc()
        db.session.commit()
        assert cached_elsewhere < 45
        assert 45 <= jobs.average_duration("demo") < 46

    def test_finished_signal_fires_once_per_terminal_state(self, app: Flask) -> None:
        events: list[str] = []

        def record(sender: Flask, job_id: str) -> None:
            events.append(job_id)

        job_finished.connect(record)
        try:
            done, failed, cancelled = new_job(), new_job(), new_job()
            attempts.complete_job(attempts.claim_job(done.id), stored_outputs())
            attempts.fail_attempt(attempts.claim_job(failed.id), "boom", transient=False)
            jobs.cancel_job(cancelled.id)
        finally:
            job_finished.disconnect(record)
        assert events == [done.id, failed.id, cancelled.id]


class TestListing:
    @pytest.mark.parametrize("status", [None, "completed"])
    def test_every_page_in_order_from_both_ends(self, app: Flask, status: str | None) -> None:
        base = now_utc() - timedelta(hours=1)
        rows = [
            Job(
                prompt=f"job {i}",
                model="demo",
                status="completed" if i % 3 else "failed",
                created_at=base + timedelta(seconds=i // 2),  # pairs share a timestamp
            )
            for i in range(37)
        ]
        db.session.add_all(rows)
        db.session.commit()
        wanted = [j for j in rows if status is None or j.status == status]
        wanted.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        seen, page = [], 1
        while True:
            result = jobs.list_jobs(page, 5, status)
            assert result.total == len(wanted)
            seen += [j.id for j in result.items]
            if not result.has_next:
                break
            page += 1
        assert seen == [j.id for j in wanted]
        assert result.pages == page and not jobs.list_jobs(page + 1, 5, status).items


def test_statuses_are_enums_in_python_and_the_same_lowercase_text_in_the_database(
    app: Flask, client: FlaskClient
) -> None:
    """`Job.status` and `WebhookEvent.status` read back as enum members; rows keep the text."""
    created = submit(client)
    job = db.session.get(Job, created["id"])
    assert job is not None and job.status is JobStatus.PENDING
    claim = attempts.claim_job(job.id)
    assert claim is not None
    attempts.fail_attempt(claim, "boom", transient=False)
    db.session.add(
        WebhookEvent(
            id="msg_test", job_id=job.id, event_type="job.failed", url="https://x.test/",
            body=b"{}", status=DeliveryStatus.RETRYING,
        )
    )  # fmt: skip
    db.session.commit()
    db.session.expire_all()
    job = db.session.get(Job, created["id"])
    event = db.session.get(WebhookEvent, "msg_test")
    assert job is not None and job.status is JobStatus.FAILED
    assert event is not None and event.status is DeliveryStatus.RETRYING
    raw = db.session.execute(
        text("SELECT j.status, e.status FROM jobs j JOIN webhook_events e ON e.job_id = j.id")
    ).one()
    assert tuple(raw) == ("failed", "retrying")
