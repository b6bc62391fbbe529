"""Huey tasks: run a job, tell a provider to cancel, and periodic upkeep.

Tasks take ids, never objects, and run inside an app context. Huey's own retries stay off:
attempts are counted in the jobs table, which survives a killed worker.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context
from huey import crontab

from webapp import jobs, webhooks
from webapp.database import write_transaction
from webapp.extensions import db, huey
from webapp.media import purge_expired, store_image, sweep_orphan_files
from webapp.models import Job, JobStatus, WorkerBeat, now_utc
from webapp.providers import get_model, provider_for
from webapp.providers.base import GenerationTask, LeaseLost, ProviderError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_app: Flask | None = None
_app_lock = threading.Lock()


def worker_app() -> Flask:
    """The app of this consumer process, created once."""
    global _app
    with _app_lock:
        if _app is None:
            from webapp import create_app

            _app = create_app()
        return _app


def in_app_context(fn: F) -> F:
    """Run a task inside an app context (the caller's, if it already has one)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return fn(*args, **kwargs)
        with worker_app().app_context():
            try:
                return fn(*args, **kwargs)
            finally:
                db.session.remove()

    return wrapper  # type: ignore[return-value]


def send(task: Any, key: str, delay: float = 0) -> None:
    """Queue a task for one id, now or after `delay` seconds.

    A failure is only logged: the database is the record, and the periodic upkeep queues
    again whatever is due and missing from the queue.
    """
    try:
        if delay > 0:
            task.schedule(args=(key,), delay=delay)
        else:
            task(key)
    except Exception:
        log.exception("could not queue %s for %s; upkeep will queue it again", task.name, key)


class _Heartbeat(threading.Thread):
    """Renews a claim's lease while a provider blocks, and notices when it is lost."""

    def __init__(self, app: Flask, claim: jobs.Claim) -> None:
        super().__init__(name=f"heartbeat-{claim.job_id[:8]}", daemon=True)
        self.app, self.claim = app, claim
        self.stopped = threading.Event()
        self.lost = threading.Event()
        self.interval = max(0.5, float(app.config["LEASE_SECONDS"]) / 3)

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopped.wait(self.interval):
                try:
                    if not jobs.renew_lease(self.claim):
                        self.lost.set()
                        return
                except Exception:
                    log.warning("lease renewal failed for %s", self.claim.job_id, exc_info=True)
                finally:
                    db.session.remove()


@huey.task()
@in_app_context
def run_job(job_id: str) -> None:
    """Claim a job, generate its images, store them and finish it (fenced by the lease)."""
    claim = jobs.claim_job(job_id)
    if claim is None:
        return  # a duplicate message, or the job was cancelled or is not due yet
    job = db.session.get(Job, job_id)
    assert job is not None
    spec = get_model(job.model)
    if spec is None:
        jobs.fail_attempt(claim, f"Model {job.model} is not available", transient=False)
        return
    heartbeat = _Heartbeat(current_app._get_current_object(), claim)
    heartbeat.start()
    last_report = [0.0]

    def report_progress(fraction: float) -> None:
        if heartbeat.lost.is_set():
            raise LeaseLost(job_id)
        now = time.monotonic()
        if fraction < 1.0 and now - last_report[0] < 0.2:
            return  # at most five progress writes a second
        last_report[0] = now
        if not jobs.renew_lease(claim, progress=fraction * 100):
            raise LeaseLost(job_id)

    def remember(provider_job_id: str) -> None:
        if not jobs.remember_provider_job_id(claim, provider_job_id):
            raise LeaseLost(job_id)

    params = dict(job.provider_parameters)
    task = GenerationTask(
        job_id=job_id,
        model=spec,
        prompt=job.prompt,
        params=params,
        report_progress=report_progress,
        remember_provider_job_id=remember,
        provider_job_id=job.provider_job_id,
    )
    db.session.commit()  # no transaction stays open while the provider works
    attempt = job.retry_count + 1
    try:
        images = provider_for(spec).generate(task)
        # One line per provider run: an audit of what was paid for (the chaos test counts
        # them; more than one per job only after a crash or a retry).
        log.info("job %s generated by %s attempt %d", job_id, claim.worker_id, attempt)
        if heartbeat.lost.is_set():
            raise LeaseLost(job_id)
        fmt = str(params.get("output_format") or "png")
        quality = int(params.get("output_quality") or 90)
        outputs = [
            store_image(image, fmt, quality, jobs.output_media_id(claim.token, index))
            for index, image in enumerate(images)
        ]
        if not jobs.complete_job(claim, outputs):
            log.info("job %s ended elsewhere while running; result discarded", job_id)
    except LeaseLost:
        log.info("job %s was cancelled or taken over; stopping", job_id)
        jobs.discard_outputs(claim)
    except ProviderError as exc:
        jobs.fail_attempt(
            claim,
            exc.message,
            transient=exc.transient,
            details=exc.details,
            retry_after=getattr(exc, "retry_after", None),
        )
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job_id)
        jobs.discard_outputs(claim)  # also a picture whose thumbnail could not be written
        jobs.fail_attempt(claim, f"Internal error: {type(exc).__name__}", transient=False)
    finally:
        heartbeat.stopped.set()


@huey.task()
@in_app_context
def cancel_upstream(job_id: str) -> None:
    """Tell the provider to stop a cancelled job's run."""
    job = db.session.get(Job, job_id)
    if job is None or job.status != JobStatus.CANCELLED or not job.provider_job_id:
        return
    spec = get_model(job.model)
    if spec is not None:
        provider_for(spec).cancel(job.provider_job_id)


@huey.task()
@in_app_context
def deliver_webhook(event_id: str) -> None:
    """Make one delivery attempt of a webhook event."""
    webhooks.deliver(event_id)


def queued_ids(task_name: str) -> set[str] | None:
    """First arguments of a task's messages waiting in the queue (None: queue unreadable)."""
    try:
        tasks = list(huey.pending()) + list(huey.scheduled())
    except Exception:
        log.warning("could not read the queue", exc_info=True)
        return None
    return {str(t.args[0]) for t in tasks if t.name.endswith(task_name) and t.args}


def queued_job_ids() -> set[str] | None:
    """Ids of jobs with a message waiting in the queue, or None if the queue can't be read."""
    return queued_ids("run_job")


@huey.periodic_task(crontab(minute="7"))
@in_app_context
def purge_expired_media() -> None:
    """Every hour: remove the files of media past retention (their URLs then answer 410)."""
    purge_expired()


@huey.periodic_task(crontab(minute="37"))
@in_app_context
def sweep_storage() -> None:
    """Every hour: remove files no media row names (left by a process killed mid-way)."""
    sweep_orphan_files(jobs.live_output_ids)


@huey.periodic_task(crontab(minute="*"))
@in_app_context
def upkeep() -> None:
    """Every minute: recover jobs of dead workers, re-send lost messages and webhooks."""
    jobs.reap(queued_job_ids())
    webhooks.sweep(queued_ids("deliver_webhook"))


def beat(worker_id: str) -> None:
    """Record that this consumer process is alive."""
    now = now_utc()
    # IMMEDIATE: a read that upgrades to a write fails at once with "database is locked"
    # when a job claim commits in between, and that used to skip the start-up reap.
    with write_transaction():
        row = db.session.get(WorkerBeat, worker_id)
        if row is None:
            host, _, pid = worker_id.rpartition(":")
            db.session.add(WorkerBeat(id=worker_id, hostname=host, pid=int(pid), last_seen=now))
        else:
            row.last_seen = now


_started = False
_start_lock = threading.Lock()


@huey.on_startup()
def on_consumer_start() -> None:
    """Once per consumer process: recover what a previous crash left, then keep a heartbeat."""
    global _started
    with _start_lock:  # every worker thread runs the start-up hooks
        if _started:
            return
        _started = True
    app = worker_app()
    listen = getattr(huey.storage, "listen", None)
    if listen is not None:
        # Idle workers wait for the doorbell instead of polling the queue file.
        listen(float(app.config["DOORBELL_WAIT_SECONDS"]))
    worker_id = jobs.worker_identity()
    with app.app_context():
        try:
            beat(worker_id)
        except Exception:
            log.exception("could not record this worker's start")
            db.session.rollback()
        try:
            jobs.reap(queued_job_ids())
            # Webhooks too, without waiting for the periodic upkeep to get through the queue.
            webhooks.sweep(queued_ids("deliver_webhook"))
        except Exception:
            log.exception("start-up recovery failed; the periodic reaper will retry")
        finally:
            db.session.remove()

    def keep_beating() -> None:
        while True:
            time.sleep(15)
            with app.app_context():
                try:
                    beat(worker_id)
                except Exception:
                    log.warning("worker heartbeat failed", exc_info=True)
                finally:
                    db.session.remove()

    threading.Thread(target=keep_beating, name="worker-beat", daemon=True).start()
