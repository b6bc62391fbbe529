"""Job operations: submit, claim, heartbeat, finish, fail, cancel, reap, list, estimate.

The jobs table is the queue of record and Huey only rings the doorbell: a worker claims a
job with one guarded UPDATE that writes a fresh lease token, and every later write of that
worker is fenced by the token, so a stalled worker that wakes up cannot overwrite a job
that was cancelled or handed to someone else.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from blinker import Namespace
from flask import current_app
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import joinedload, selectinload

from webapp.database import single_read, write_transaction
from webapp.extensions import db
from webapp.job_counts import count_active, count_jobs
from webapp.media import StoredImage, remove_files, remove_stored
from webapp.models import ACTIVE_STATUSES, Job, JobStatus, Media, now_utc
from webapp.params import MAX_SEED, JobCreate, RequestInvalid, check_model_parameters
from webapp.providers import available_models, default_model_id
from webapp.providers.mapping import resolve_parameters
from webapp.webhooks import check_submitted_url

log = logging.getLogger(__name__)

signals = Namespace()
# Sent with the job id after a job reaches completed, failed or cancelled (after the commit).
# Webhook delivery connects here.
job_finished = signals.signal("job-finished")

RETRYABLE = (JobStatus.PENDING, JobStatus.RETRYING)
# Media ids of an attempt's outputs derive from its lease token (see `output_media_id`).
OUTPUT_IDS = uuid.UUID("1f0c1b7e-6a51-4f58-9a43-3d2f4c8e7b10")


class JobNotFound(Exception):
    """No job has this id."""


class JobNotCancellable(Exception):
    """The job already ended and can no longer be cancelled."""

    def __init__(self, status: str) -> None:
        super().__init__(f"Cannot cancel job in {status} state")
        self.status = status


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job: the job id and the lease token that fences its writes."""

    job_id: str
    token: str
    worker_id: str


def worker_identity() -> str:
    """Name this process so the reaper can tell a dead local worker from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}"


def get_job(job_id: str) -> Job:
    """Fetch a job or raise `JobNotFound`."""
    # The media come in the same query: every caller shows them.
    job = db.session.get(Job, job_id, options=[joinedload(Job.media)])
    if job is None:
        raise JobNotFound(job_id)
    return job


# What the status endpoint shows of a job and of each of its media, read in one Core
# statement: the ORM's identity map and relationship loading cost more than the whole
# rest of that request, which clients poll in a loop.
_STATUS_JOB_COLUMNS = (
    "id", "status", "prompt", "model", "parameters", "provider_parameters", "warnings",
    "client_metadata", "webhook_url", "created_at", "updated_at", "started_at",
    "completed_at", "retry_count", "max_retries", "error_message", "error_details",
    "progress",
)  # fmt: skip
_STATUS_MEDIA_COLUMNS = (
    "id", "type", "mime_type", "file_size_bytes", "width", "height", "expires_at", "purged_at"
)  # fmt: skip
_STATUS_QUERY = (
    select(
        *(getattr(Job, name).label(name) for name in _STATUS_JOB_COLUMNS),
        *(getattr(Media, name).label(f"media_{name}") for name in _STATUS_MEDIA_COLUMNS),
    )
    .outerjoin(Media, Media.job_id == Job.id)
    .where(Job.id == bindparam("job_id"))
    .order_by(Media.position)
)


@dataclass(frozen=True)
class JobStatusRead:
    """A job's status fields and its media, as plain rows (see `read_job_status`)."""

    job: Any
    media: list[dict[str, Any]]


def read_job_status(job_id: str) -> JobStatusRead:
    """A job's status and media in one query (no ORM objects), or raise `JobNotFound`."""
    with single_read() as conn:
        rows = conn.execute(_STATUS_QUERY, {"job_id": job_id}).all()
    if not rows:
        raise JobNotFound(job_id)
    media = [
        {name: row._mapping[f"media_{name}"] for name in _STATUS_MEDIA_COLUMNS}
        for row in rows
        if row.media_id is not None
    ]
    return JobStatusRead(job=rows[0], media=media)


# -- submitting -------------------------------------------------------------------------


# The attributes a submission sets (all that the new job's answer and card show), by the
# table column each is stored in; the table's defaults fill the rest.
_SUBMITTED_COLUMNS = {
    attr: Job.__mapper__.columns[attr].key
    for attr in (
        "id", "status", "prompt", "model", "parameters", "provider_parameters", "warnings",
        "webhook_url", "client_metadata", "progress", "retry_count", "max_retries", "client_ip",
        "created_at", "updated_at",
    )
}  # fmt: skip
_INSERT_JOB = Job.__table__.insert()


def submit_job(request: JobCreate, client_ip: str | None = None) -> Job:
    """Validate a request against its model, store the job and ring the queue's doorbell."""
    models = available_models()
    model_id = request.model or default_model_id(models)
    spec = models.get(model_id)
    if spec is None:
        choices = ", ".join(f"'{m}'" for m in models)
        raise RequestInvalid(
            [
                {
                    "type": "model_unknown",
                    "loc": ["body", "model"],
                    "msg": f"Input should be one of: {choices}",
                    "input": model_id,
                }
            ]
        )
    check_model_parameters(spec, request.parameters)
    check_submitted_url(request.webhook_url)
    requested = request.requested_parameters()
    if "seed" not in requested and spec.param("seed") is not None:
        # Recorded with the request, so anyone can reproduce the picture later.
        requested["seed"] = secrets.randbelow(MAX_SEED + 1)
    resolved, warnings = resolve_parameters(spec, requested)
    now = now_utc()
    job = Job(
        id=str(uuid.uuid4()),
        status=JobStatus.PENDING,
        prompt=request.prompt,
        model=spec.id,
        parameters=requested,
        provider_parameters=resolved,
        warnings=warnings,
        webhook_url=request.webhook_url,
        client_metadata=request.metadata,
        max_retries=int(current_app.config["MAX_RETRIES"]),
        client_ip=client_ip,
        progress=0.0,
        retry_count=0,
        created_at=now,
        updated_at=now,
    )
    # A Core INSERT of the row: the ORM's unit of work costs more than the statement, and
    # the new job needs none of it (the object above is only handed back, never attached).
    row = {column: getattr(job, attr) for attr, column in _SUBMITTED_COLUMNS.items()}
    with write_transaction():
        db.session.connection().execute(_INSERT_JOB, row)
    enqueue(job.id)
    return job


def enqueue(job_id: str, delay: float = 0) -> None:
    """Ring the doorbell; if the queue is down the reaper rings it again later."""
    from webapp.tasks import run_job, send

    send(run_job, job_id, delay)


def estimate_seconds(job: Job) -> int:
    """Seconds until a job just submitted is likely done: the jobs waiting or running
    besides it (from the per-status counts, so a long backlog costs nothing to count),
    spread over the workers, times the model's recent durations."""
    ahead = max(0, count_active() - 1)
    per_job = average_duration(job.model)
    workers = max(1, int(current_app.config["WORKER_CONCURRENCY"]))
    return max(1, math.ceil((ahead // workers + 1) * per_job))


def average_duration(model_id: str, sample: int = 20) -> float:
    """Mean run time of the model's recent completed jobs, or its typical time.

    Kept for `ESTIMATE_CACHE_SECONDS` per process and app (each app has its own database):
    it moves slowly, and every submission asks for it.
    """
    ttl = float(current_app.config["ESTIMATE_CACHE_SECONDS"])
    durations_cache: dict[str, tuple[float, float]] = current_app.extensions.setdefault(
        "darkroom.durations", {}
    )
    cached = durations_cache.get(model_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    rows = db.session.execute(
        select(Job.started_at, Job.completed_at)
        .where(Job.model == model_id, Job.status == JobStatus.COMPLETED)
        .order_by(Job.completed_at.desc())
        .limit(sample)
    ).all()
    durations = [(end - start).total_seconds() for start, end in rows if start and end]
    if durations:
        value = max(0.1, sum(durations) / len(durations))
    else:
        spec = available_models().get(model_id)
        value = spec.typical_seconds if spec else 10.0
    if ttl > 0:
        durations_cache[model_id] = (time.monotonic() + ttl, value)
    return value


@dataclass
class JobPage:
    """One page of the job listing."""

    items: list[Job]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages there are."""
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_next(self) -> bool:
        """Whether a later page exists."""
        return self.page < self.pages

    @property
    def has_prev(self) -> bool:
        """Whether an earlier page exists."""
        return self.page > 1


def list_jobs(page: int, per_page: int, status: str | None = None) -> JobPage:
    """One page of jobs, newest first, optionally of one status.

    Ids are read first from the (status,) created_at, id index alone, then only that page's
    rows are loaded. Past the middle, the ids are counted from the oldest end instead, so the
    last page costs what the first does.
    """
    where = [Job.status == status] if status else []
    total = count_jobs(status)
    offset = (page - 1) * per_page
    ids: list[str] = []
    if offset < total:
        limit = min(per_page, total - offset)
        newest_first = (Job.created_at.desc(), Job.id.desc())
        oldest_first = (Job.created_at.asc(), Job.id.asc())
        if offset <= total // 2:
            stmt = select(Job.id).where(*where).order_by(*newest_first).offset(offset)
            ids = list(db.session.scalars(stmt.limit(limit)))
        else:
            stmt = select(Job.id).where(*where).order_by(*oldest_first)
            stmt = stmt.offset(total - offset - limit).limit(limit)
            ids = list(reversed(list(db.session.scalars(stmt))))
    rows = {}
    if ids:
        stmt = select(Job).options(selectinload(Job.media)).where(Job.id.in_(ids))
        rows = {job.id: job for job in db.session.scalars(stmt)}
    return JobPage([rows[i] for i in ids if i in rows], total, page, per_page)


# -- the worker's side ------------------------------------------------------------------


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=float(current_app.config["LEASE_SECONDS"]))


def _fenced(claim: Claim) -> Any:
    """An UPDATE that only touches the job while this claim still holds it."""
    return (
        update(Job)
        .where(
            Job.id == claim.job_id,
            Job.lease_token == claim.token,
            Job.status == JobStatus.PROCESSING,
        )
        .execution_options(synchronize_session=False)
    )


def output_media_id(lease_token: str, index: int) -> str:
    """The media id of an attempt's index-th output (the attempt named by its lease token),
    known before its files are written.

    A worker killed between storing its files and recording them leaves files no row names;
    whoever later declares the claim dead finds them by these ids (`discard_outputs`).
    """
    return str(uuid.uuid5(OUTPUT_IDS, f"{lease_token}/{index}"))


def live_output_ids(per_claim: int = 16) -> set[str]:
    """Media ids that running attempts may still record (their first `per_claim` outputs).

    The storage sweep keeps their files: an attempt writes its pictures before the row that
    names them, and may take its time in between while its heartbeat keeps the lease.
    """
    tokens = db.session.scalars(
        select(Job.lease_token).where(
            Job.status == JobStatus.PROCESSING, Job.lease_token.is_not(None)
        )
    ).all()
    return {output_media_id(token, index) for token in tokens for index in range(per_claim)}


def discard_outputs(claim: Claim) -> int:
    """Delete the files an attempt stored but never recorded; returns how many outputs.

    Outputs are stored in order, so the first index with nothing stored ends the search.
    Only for a claim that can no longer complete (a fenced write refused it or ended it).
    """
    index = 0
    while remove_stored(output_media_id(claim.token, index)):
        index += 1
    return index


def claim_job(job_id: str, worker_id: str | None = None) -> Claim | None:
    """Take a waiting job for this worker; None when it is not (or no longer) waiting."""
    now = now_utc()
    claim = Claim(job_id=job_id, token=str(uuid.uuid4()), worker_id=worker_id or worker_identity())
    with write_transaction():
        result = db.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(RETRYABLE),
                (Job.run_after.is_(None)) | (Job.run_after <= now),
            )
            .values(
                status=JobStatus.PROCESSING,
                lease_token=claim.token,
                lease_expires_at=_lease_until(now),
                worker_id=claim.worker_id,
                started_at=func.coalesce(Job.started_at, now),
                run_after=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return claim if result.rowcount == 1 else None


def renew_lease(claim: Claim, progress: float | None = None) -> bool:
    """Extend the lease (and record progress); False means the job is no longer ours."""
    now = now_utc()
    values: dict[str, Any] = {"lease_expires_at": _lease_until(now), "updated_at": now}
    if progress is not None:
        values["progress"] = round(max(0.0, min(100.0, progress)), 1)
    with write_transaction():
        result = db.session.execute(_fenced(claim).values(**values))
    return result.rowcount == 1


def remember_provider_job_id(claim: Claim, provider_job_id: str) -> bool:
    """Commit the provider's id at once, so a retry resumes it instead of paying twice."""
    with write_transaction():
        result = db.session.execute(
            _fenced(claim).values(provider_job_id=provider_job_id, updated_at=now_utc())
        )
    return result.rowcount == 1


def complete_job(claim: Claim, outputs: list[StoredImage]) -> bool:
    """Record the outputs and mark the job completed; False (files removed) if it was lost."""
    now = now_utc()
    try:
        with write_transaction():
            result = db.session.execute(
                _fenced(claim).values(
                    status=JobStatus.COMPLETED,
                    progress=100.0,
                    completed_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                    error_message=None,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise _LostLease
            db.session.add_all(out.to_media(claim.job_id, i, now) for i, out in enumerate(outputs))
    except _LostLease:
        for out in outputs:
            remove_files(out.storage_path, out.thumbnail_path)
        return False
    job_finished.send(current_app._get_current_object(), job_id=claim.job_id)
    return True


class _LostLease(Exception):
    """Raised inside a transaction to roll it back when the fence refused the write."""


def retry_delay(retry_count: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, never sooner than the provider asked."""
    base = float(current_app.config["RETRY_BASE_SECONDS"])
    cap = float(current_app.config["RETRY_MAX_SECONDS"])
    delay = random.uniform(base, min(cap, base * 2**retry_count))
    return max(delay, retry_after or 0.0)


def fail_attempt(
    claim: Claim,
    message: str,
    *,
    transient: bool,
    details: dict[str, Any] | None = None,
    retry_after: float | None = None,
) -> str | None:
    """End an attempt that failed: retry later if allowed, else fail. Returns the new status."""
    job = db.session.get(Job, claim.job_id, populate_existing=True)
    if job is None:
        return None
    now = now_utc()
    if transient and job.retry_count < job.max_retries:
        delay = retry_delay(job.retry_count, retry_after)
        with write_transaction():
            result = db.session.execute(
                _fenced(claim)
                .where(Job.retry_count < Job.max_retries)
                .values(
                    status=JobStatus.RETRYING,
                    retry_count=Job.retry_count + 1,
                    run_after=now + timedelta(seconds=delay),
                    lease_token=None,
                    lease_expires_at=None,
                    error_message=message,
                    updated_at=now,
                )
            )
        if result.rowcount == 1:
            enqueue(claim.job_id, delay=delay)
            return JobStatus.RETRYING
    with write_transaction():
        result = db.session.execute(
            _fenced(claim).values(
                status=JobStatus.FAILED,
                completed_at=now,
                lease_token=None,
                lease_expires_at=None,
                error_message=message,
                error_details={
                    **(details or {}),
                    "retry_count": job.retry_count,
                    "max_retries": job.max_retries,
                },
                updated_at=now,
            )
        )
    if result.rowcount != 1:
        return None
    job_finished.send(current_app._get_current_object(), job_id=claim.job_id)
    return JobStatus.FAILED


# -- cancelling -------------------------------------------------------------------------


def cancel_job(job_id: str) -> Job:
    """Cancel a waiting or running job at once; the fence keeps a late result out."""
    now = now_utc()
    with write_transaction():
        result = db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
            .values(
                status=JobStatus.CANCELLED,
                completed_at=now,
                lease_token=None,
                lease_expires_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    job = db.session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    if result.rowcount != 1:
        raise JobNotCancellable(job.status)
    if job.provider_job_id:
        from webapp.tasks import cancel_upstream

        try:
            cancel_upstream(job.id)
        except Exception:
            log.exception("could not queue the upstream cancel of job %s", job.id)
    job_finished.send(current_app._get_current_object(), job_id=job.id)
    return job


def delete_job(job_id: str) -> None:
    """Delete a job with its media rows and files; a running job is cancelled first."""
    with contextlib.suppress(JobNotCancellable):
        cancel_job(job_id)
    with write_transaction():
        job = db.session.get(Job, job_id)
        if job is None:
            raise JobNotFound(job_id)
        paths = [p for m in job.media for p in (m.storage_path, m.thumbnail_path)]
        db.session.execute(delete(Media).where(Media.job_id == job_id))
        db.session.delete(job)
    # Files go after the commit: a failed commit must not leave rows without their files.
    remove_files(*paths)


# -- upkeep -----------------------------------------------------------------------------


# When this process started. A claim under our own pid that was last touched before then was
# made by a predecessor with the same pid: a restarted container's consumer is PID 1 again.
_process_started = now_utc()


def _restarted_clock() -> None:
    global _process_started
    _process_started = now_utc()


os.register_at_fork(after_in_child=_restarted_clock)


def local_worker_is_dead(worker_id: str | None, last_active: datetime | None = None) -> bool:
    """True when the worker ran on this host and its process is gone.

    `last_active` (when the holder last wrote) tells this process's own claims from those
    of an earlier process that had the same pid.
    """
    if not worker_id:
        return False
    host, _, pid_text = worker_id.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return last_active is not None and last_active < _process_started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process that nobody reaped yet (e.g. under a PID 1 that never waits) is dead."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - tiny read-only file
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may contain spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def reap(queued_job_ids: set[str] | None = None) -> dict[str, int]:
    """Recover jobs whose worker died and re-ring the doorbell for jobs whose message was lost.

    A job whose lease expired, or whose worker process on this host is gone, goes back to
    `retrying` (a crash counts as an attempt) or ends `failed` once its retries are spent.
    A waiting job that is not in the queue (`queued_job_ids`, when known) and has waited
    longer than `STALE_QUEUE_SECONDS` is enqueued again; duplicates are harmless because a
    claim only succeeds once.
    """
    now = now_utc()
    counts = {"requeued": 0, "failed": 0, "reenqueued": 0}
    running = db.session.execute(
        select(Job.id, Job.lease_token, Job.lease_expires_at, Job.worker_id, Job.updated_at).where(
            Job.status == JobStatus.PROCESSING
        )
    ).all()
    for job_id, token, expires, worker_id, updated_at in running:
        # Every write of the holder (claim, heartbeat, progress) sets updated_at.
        expired = expires is not None and expires <= now
        if not (expired or local_worker_is_dead(worker_id, updated_at)):
            continue
        claim = Claim(job_id=job_id, token=token or "", worker_id=worker_id or "")
        status = fail_attempt(
            claim,
            "The worker running this job stopped before it finished",
            transient=True,
            details={"reason": "worker_lost"},
        )
        if status is not None and claim.token and (removed := discard_outputs(claim)):
            # The dead claim can no longer complete: what it stored is garbage now.
            log.info("reaper: removed %d unrecorded outputs of job %s", removed, job_id)
        if status == JobStatus.RETRYING:
            counts["requeued"] += 1
        elif status == JobStatus.FAILED:
            counts["failed"] += 1
    stale_before = now - timedelta(seconds=float(current_app.config["STALE_QUEUE_SECONDS"]))
    waiting = db.session.execute(
        select(Job.id, Job.run_after).where(
            Job.status.in_(RETRYABLE),
            func.coalesce(Job.run_after, Job.updated_at) <= stale_before,
        )
    ).all()
    for job_id, _run_after in waiting:
        if queued_job_ids is not None and job_id in queued_job_ids:
            continue
        enqueue(job_id)
        counts["reenqueued"] += 1
    db.session.commit()
    if any(counts.values()):
        log.info("reaper: %s", counts)
    return counts
