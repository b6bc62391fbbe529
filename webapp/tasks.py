"""Huey tasks: run a job, tell a provider to cancel, deliver a webhook, periodic upkeep.

Tasks take ids, never objects, and run inside an app context. Huey's own retries stay off:
attempts are counted in the jobs table, which survives a killed worker. The domain queues
these tasks through `webapp.queue`, never by importing this module. Webhook attempts run on
the consumer's delivery pool (`webapp.delivery`), never on the worker threads jobs need.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, has_app_context
from huey import crontab

from webapp import attempts, delivery, runs, uploads, webhooks
from webapp.database import write_transaction
from webapp.extensions import db, huey
from webapp.media import purge_expired, sweep_orphan_files
from webapp.models import Job, JobStatus, WorkerBeat, now_utc
from webapp.providers import backends, get_model, probe_all_providers, provider_for
from webapp.queue import enqueue_delivery
from webapp.signals import this_app
from webapp.workers import split_identity, worker_identity

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


@huey.task()
@in_app_context
def run_job(job_id: str) -> None:
    """Claim a job, generate its images, store them and finish it (`webapp.runs`)."""
    runs.run_attempt(job_id)


@huey.task()
@in_app_context
def cancel_upstream(job_id: str) -> None:
    """Tell the provider to stop a cancelled job's run (on the backend it ran on)."""
    job = db.session.get(Job, job_id)
    if job is None or job.status != JobStatus.CANCELLED or not job.provider_job_id:
        return
    spec = get_model(job.model)
    if spec is not None:
        provider_for(spec).cancel(job.provider_job_id, backends.by_key(job.backend))


@huey.task()
@in_app_context
def deliver_webhook(event_id: str, deferred: int = 0) -> None:
    """Hand a due webhook event to the delivery pool, or put it back in the queue for later.

    This runs on a worker thread that generations need, so it never waits for a receiver:
    the attempt runs on the pool, which keeps it until its destination has room. When not
    even that is possible (too many wait for the destination already, or the consumer is
    stopping), the message is queued again (`deferred` counts how often, to wait longer
    each time). Where no pool was started (anything but the consumer, such as tests that
    run tasks in their own process) the attempt is made right here.
    """
    pool = delivery.running_pool()
    if pool is None:
        webhooks.deliver(event_id)
        return
    url = webhooks.due_url(event_id)
    if url is None:
        return  # not due, being delivered, ended or gone: `deliver` would drop it too
    if not pool.offer(event_id, delivery.destination(url)):
        delay = delivery.later(deferred, float(this_app().config["WEBHOOK_TIMEOUT"]))
        enqueue_delivery(event_id, delay=delay, deferred=deferred + 1)


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


@huey.periodic_task(crontab(minute="17"))
@in_app_context
def remove_expired_uploads() -> None:
    """Every hour: remove the uploads no job used within their 24 hours (rows and files)."""
    uploads.sweep_expired()


@huey.periodic_task(crontab(minute="37"))
@in_app_context
def sweep_storage() -> None:
    """Every hour: remove files no media or upload row names (left by a process killed
    mid-way)."""
    sweep_orphan_files(attempts.live_output_ids)


@huey.periodic_task(crontab(minute="*"))
@in_app_context
def upkeep() -> None:
    """Every minute: recover jobs of dead workers, re-send lost messages and webhooks,
    forget the previews of jobs that ended."""
    attempts.reap(queued_job_ids())
    webhooks.sweep(queued_delivery_ids())
    attempts.purge_previews()


@huey.periodic_task(crontab(minute="*"))
@in_app_context
def probe_backends() -> None:
    """Every minute: ask each server of the self-hosted providers whether it answers and
    what models it offers (a down one only once its back-off is over)."""
    probe_all_providers()


def queued_delivery_ids() -> set[str] | None:
    """Events whose delivery waits: in the queue, or in this consumer's pool for its turn."""
    ids = queued_ids("deliver_webhook")
    pool = delivery.running_pool()
    if ids is not None and pool is not None:
        ids |= pool.waiting_ids()
    return ids


def beat(worker_id: str) -> None:
    """Record that this consumer process is alive."""
    now = now_utc()
    # IMMEDIATE: a read that upgrades to a write fails at once with "database is locked"
    # when a job claim commits in between, and that used to skip the start-up reap.
    with write_transaction():
        row = db.session.get(WorkerBeat, worker_id)
        if row is None:
            host, pid = split_identity(worker_id)
            db.session.add(WorkerBeat(id=worker_id, hostname=host, pid=pid or 0, last_seen=now))
        else:
            row.last_seen = now


_started = False
_start_lock = threading.Lock()


@huey.on_startup()
def on_consumer_start() -> None:
    """Start (or resume) the delivery pool; then, once per consumer process, recover what a
    previous crash left and keep a heartbeat."""
    global _started
    with _start_lock:  # every worker thread runs the start-up hooks
        # Before any worker thread takes a delivery message (it would make the attempt on
        # its own thread), and again for one that huey restarts after `on_worker_stop`.
        app = worker_app()
        delivery.start_pool(app)
        if _started:
            return
        _started = True
    listen = getattr(huey.storage, "listen", None)
    if listen is not None:
        # Idle workers wait for the doorbell instead of polling the queue file.
        listen(float(app.config["DOORBELL_WAIT_SECONDS"]))
    worker_id = worker_identity()
    with app.app_context():
        try:
            beat(worker_id)
        except Exception:
            log.exception("could not record this worker's start")
            db.session.rollback()
        try:
            attempts.reap(queued_job_ids())
            # Webhooks too, without waiting for the periodic upkeep to get through the queue.
            webhooks.sweep(queued_delivery_ids())
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


# After an attempt's timeout, the time a stopping consumer allows for recording its outcome.
RECORD_SECONDS = 1.0


@huey.on_shutdown()
def on_worker_stop() -> None:
    """As a worker thread stops: hand the waiting deliveries back to the queue and let
    those in flight end before the process does.

    An attempt ends by its timeout, so a graceful stop (SIGINT) waits about that long at
    most for receivers that hang, and each attempt's outcome is recorded and its retry
    queued, rather than left claimed for the next consumer's sweep. Huey also stops a
    worker thread alone (one that died, or `--max-tasks`); the thread it starts instead
    runs `on_consumer_start`, which resumes the pool.
    """
    pool = delivery.running_pool()
    if pool is None:
        return
    timeout = float(worker_app().config["WEBHOOK_TIMEOUT"]) + RECORD_SECONDS
    if not pool.stop(timeout):
        log.warning(
            "webhook deliveries still running after %.0fs; the next consumer sends them again",
            timeout,
        )
