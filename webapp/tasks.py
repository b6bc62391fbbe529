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
from PIL import Image

from webapp import attempts, delivery, inputs, uploads, webhooks
from webapp.attempts import Claim
from webapp.database import write_transaction
from webapp.extensions import db, huey
from webapp.media import StorageUnwritable, purge_expired, store_image, sweep_orphan_files
from webapp.models import Job, JobStatus, WorkerBeat, now_utc
from webapp.providers import backends, get_model, probe_all_providers, provider_for
from webapp.providers.base import (
    GenerationTask,
    LeaseLost,
    ModelSpec,
    ProviderError,
    TransientProviderError,
)
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


class _Heartbeat(threading.Thread):
    """Renews a claim's lease while a provider blocks, and notices when it is lost."""

    def __init__(self, app: Flask, claim: Claim) -> None:
        super().__init__(name=f"heartbeat-{claim.job_id[:8]}", daemon=True)
        self.app, self.claim = app, claim
        self.stopped = threading.Event()
        self.lost = threading.Event()
        self.interval = max(0.5, float(app.config["LEASE_SECONDS"]) / 3)

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopped.wait(self.interval):
                try:
                    if not attempts.renew_lease(self.claim):
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
    claim = attempts.claim_job(job_id)
    if claim is None:
        return  # a duplicate message, or the job was cancelled or is not due yet
    job = db.session.get(Job, job_id)
    if job is None:  # deleted between the claim and this read
        return
    spec = get_model(job.model)
    if spec is None:
        attempts.fail_attempt(claim, f"Model {job.model} is not available", transient=False)
        return
    heartbeat = _Heartbeat(this_app(), claim)
    heartbeat.start()
    last_report = [0.0]

    def report_progress(fraction: float) -> None:
        if heartbeat.lost.is_set():
            raise LeaseLost(job_id)
        now = time.monotonic()
        if fraction < 1.0 and now - last_report[0] < 0.2:
            return  # at most five progress writes a second
        last_report[0] = now
        if not attempts.renew_lease(claim, progress=fraction * 100):
            raise LeaseLost(job_id)

    def remember(provider_job_id: str) -> None:
        if not attempts.remember_provider_job_id(claim, provider_job_id):
            raise LeaseLost(job_id)

    last_preview = [0.0]

    def report_preview(image: Image.Image) -> None:
        if heartbeat.lost.is_set():
            raise LeaseLost(job_id)
        now = time.monotonic()
        if now - last_preview[0] < 1.0:
            return  # at most one preview a second
        last_preview[0] = now
        if not attempts.store_preview(claim, image):
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
        report_preview=report_preview,
    )
    attempt = job.retry_count + 1
    provider = provider_for(spec)
    try:
        task.inputs = inputs.load_inputs(job_id)  # InputMissing if one was deleted meanwhile
        if provider.uses_backends:
            task.backend = _backend_for(claim, spec)
        db.session.commit()  # no transaction stays open while the provider works
        images = provider.generate(task)
        # One line per provider run: an audit of what was paid for (the chaos test counts
        # them; more than one per job only after a crash or a retry).
        log.info("job %s generated by %s attempt %d", job_id, claim.worker_id, attempt)
        if heartbeat.lost.is_set():
            raise LeaseLost(job_id)
        fmt = str(params.get("output_format") or "png")
        quality = int(params.get("output_quality") or 90)
        outputs = [
            store_image(image, fmt, quality, attempts.output_media_id(claim.token, index))
            for index, image in enumerate(images)
        ]
        if not attempts.complete_job(claim, outputs, task.output):
            log.info("job %s ended elsewhere while running; result discarded", job_id)
    except LeaseLost:
        log.info("job %s was cancelled or taken over; stopping", job_id)
        attempts.discard_outputs(claim)
    except backends.BackendDown as exc:
        until = backends.record_down(exc.backend, exc.message)
        elsewhere = backends.others_usable(exc.backend, str(spec.extra["backend_model"]))
        attempts.fail_attempt(
            claim,
            exc.message,
            transient=True,
            details={**exc.details, "backend": exc.backend.name},
            retry_after=None if elsewhere else (until - now_utc()).total_seconds(),
            failover=elsewhere,
        )
    except ProviderError as exc:
        attempts.fail_attempt(
            claim,
            exc.message,
            transient=exc.transient,
            details=exc.details,
            retry_after=getattr(exc, "retry_after", None),
        )
    except StorageUnwritable as exc:
        # A full, read-only or failing disk: the next attempt may find it fixed.
        log.warning("job %s: %s", job_id, exc)
        attempts.discard_outputs(claim)
        attempts.fail_attempt(claim, str(exc), transient=True)
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job_id)
        attempts.discard_outputs(claim)  # also a picture whose thumbnail could not be written
        attempts.fail_attempt(claim, f"Internal error: {type(exc).__name__}", transient=False)
    finally:
        heartbeat.stopped.set()


def _backend_for(claim: Claim, spec: ModelSpec) -> backends.Backend:
    """The backend this attempt runs on (noted on the job), or a transient error when no
    backend that offers the model answers now."""
    name = str(spec.extra["backend_model"])
    backend = backends.choose(spec.provider, name)
    if backend is None:
        raise TransientProviderError(
            f"No {spec.provider} server that offers {name} answers now",
            retry_after=float(this_app().config["BACKEND_RETRY_SECONDS"]),
        )
    if not attempts.remember_backend(claim, backend.key):
        raise LeaseLost(claim.job_id)
    return backend


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
