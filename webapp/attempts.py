"""The worker's side of a job: claim, heartbeat, fenced writes, finish, fail, and the reaper.

A worker claims a job with one guarded UPDATE that writes a fresh lease token, and every
later write of that worker is fenced by the token, so a stalled worker that wakes up cannot
overwrite a job that was cancelled or handed to someone else. The request side (submit,
read, list, cancel) is `webapp.jobs`.
"""

from __future__ import annotations

import io
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from PIL import Image
from sqlalchemy import delete, func, select, update

from webapp.database import rows_changed, write_transaction
from webapp.extensions import db
from webapp.media import StoredImage, remove_files, remove_stored
from webapp.models import CLAIMABLE_STATUSES, Job, JobPreview, JobStatus, now_utc
from webapp.queue import enqueue_job
from webapp.signals import announce_finished
from webapp.workers import local_worker_is_dead, worker_identity

log = logging.getLogger(__name__)

MAX_FAILOVERS = 5
"""Moves of one job off backends that went down that do not count as retries (the first
one does); past these, each counts as any retry does."""

# Media ids of an attempt's outputs derive from its lease token (see `output_media_id`).
OUTPUT_IDS = uuid.UUID("1f0c1b7e-6a51-4f58-9a43-3d2f4c8e7b10")


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job: the job id and the lease token that fences its writes."""

    job_id: str
    token: str
    worker_id: str


class _FenceRefused(Exception):
    """Raised inside a transaction to roll it back when the fence refused the write."""


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


def claim_job(job_id: str, worker_id: str | None = None) -> Claim | None:
    """Take a waiting job for this worker; None when it is not (or no longer) waiting."""
    now = now_utc()
    claim = Claim(job_id=job_id, token=str(uuid.uuid4()), worker_id=worker_id or worker_identity())
    with write_transaction():
        changed = rows_changed(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(CLAIMABLE_STATUSES),
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
    return claim if changed == 1 else None


def renew_lease(claim: Claim, progress: float | None = None) -> bool:
    """Extend the lease (and record progress); False means the job is no longer ours."""
    now = now_utc()
    values: dict[str, Any] = {"lease_expires_at": _lease_until(now), "updated_at": now}
    if progress is not None:
        values["progress"] = round(max(0.0, min(100.0, progress)), 1)
    with write_transaction():
        changed = rows_changed(_fenced(claim).values(**values))
    return changed == 1


def remember_provider_job_id(claim: Claim, provider_job_id: str) -> bool:
    """Commit the provider's id at once, so a retry resumes it instead of paying twice."""
    with write_transaction():
        changed = rows_changed(
            _fenced(claim).values(provider_job_id=provider_job_id, updated_at=now_utc())
        )
    return changed == 1


def remember_backend(claim: Claim, backend_key: str) -> bool:
    """Note which backend this attempt runs on (counted as its queue, and told to cancel)."""
    with write_transaction():
        changed = rows_changed(_fenced(claim).values(backend=backend_key, updated_at=now_utc()))
    return changed == 1


PREVIEW_SIDE = 384  # the running card's width, twice over for sharp screens
PREVIEW_QUALITY = 70


def purge_previews() -> int:
    """Forget the previews of jobs no longer running; returns how many."""
    with write_transaction():
        gone = rows_changed(
            delete(JobPreview)
            .where(
                JobPreview.job_id.not_in(select(Job.id).where(Job.status == JobStatus.PROCESSING))
            )
            .execution_options(synchronize_session=False)
        )
    return gone


def store_preview(claim: Claim, image: Image.Image) -> bool:
    """Keep a small JPEG of a running job's latest preview (replacing the one before)."""
    small = image.convert("RGB")
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=PREVIEW_QUALITY)
    now = now_utc()
    with write_transaction():
        if rows_changed(_fenced(claim).values(updated_at=now)) != 1:
            return False
        preview = db.session.get(JobPreview, claim.job_id)
        if preview is None:
            db.session.add(
                JobPreview(
                    job_id=claim.job_id, data=buffer.getvalue(), mime_type="image/jpeg",
                    updated_at=now,
                )
            )  # fmt: skip
        else:
            preview.data, preview.updated_at = buffer.getvalue(), now
    return True


# -- outputs ----------------------------------------------------------------------------


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
    return {
        output_media_id(token, index)
        for token in tokens
        if token is not None
        for index in range(per_claim)
    }


def discard_outputs(claim: Claim) -> int:
    """Delete the files an attempt stored but never recorded; returns how many outputs.

    Outputs are stored in order, so the first index with nothing stored ends the search.
    Only for a claim that can no longer complete (a fenced write refused it or ended it).
    """
    index = 0
    while remove_stored(output_media_id(claim.token, index)):
        index += 1
    return index


# -- ending an attempt ------------------------------------------------------------------


def complete_job(
    claim: Claim, outputs: list[StoredImage], provider_output: dict[str, Any] | None = None
) -> bool:
    """Record the outputs (and what the provider reported about the run) and mark the job
    completed; False (files removed) if it was lost."""
    now = now_utc()
    try:
        with write_transaction():
            changed = rows_changed(
                _fenced(claim).values(
                    status=JobStatus.COMPLETED,
                    progress=100.0,
                    completed_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                    error_message=None,
                    provider_output=provider_output or None,
                    updated_at=now,
                )
            )
            if changed != 1:
                raise _FenceRefused
            db.session.add_all(out.to_media(claim.job_id, i, now) for i, out in enumerate(outputs))
            db.session.execute(delete(JobPreview).where(JobPreview.job_id == claim.job_id))
    except _FenceRefused:
        for out in outputs:
            remove_files(out.storage_path, out.thumbnail_path)
        return False
    announce_finished(claim.job_id)
    return True


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
    failover: bool = False,
) -> JobStatus | None:
    """End an attempt that failed: retry later if allowed, else fail. Returns the new status.

    A `failover` (the attempt's backend went down and another can take the job) is retried
    at once; of a job's failovers only the first counts against `max_retries`, up to
    `MAX_FAILOVERS` (then they count as any retry does).
    """
    job = db.session.get(Job, claim.job_id, populate_existing=True)
    if job is None:
        return None
    now = now_utc()
    if transient and failover and 0 < job.backend_failovers < MAX_FAILOVERS:
        with write_transaction():
            changed = rows_changed(
                _fenced(claim).values(
                    status=JobStatus.RETRYING,
                    backend_failovers=Job.backend_failovers + 1,
                    run_after=None,
                    lease_token=None,
                    lease_expires_at=None,
                    error_message=message,
                    updated_at=now,
                )
            )
        if changed == 1:
            enqueue_job(claim.job_id)
            return JobStatus.RETRYING
    if transient and job.retry_count < job.max_retries:
        if failover:
            retry_after = 0.0
        delay = 0.0 if failover else retry_delay(job.retry_count, retry_after)
        with write_transaction():
            changed = rows_changed(
                _fenced(claim)
                .where(Job.retry_count < Job.max_retries)
                .values(
                    status=JobStatus.RETRYING,
                    retry_count=Job.retry_count + 1,
                    backend_failovers=Job.backend_failovers + (1 if failover else 0),
                    run_after=now + timedelta(seconds=delay),
                    lease_token=None,
                    lease_expires_at=None,
                    error_message=message,
                    updated_at=now,
                )
            )
        if changed == 1:
            enqueue_job(claim.job_id, delay=delay)
            return JobStatus.RETRYING
    with write_transaction():
        changed = rows_changed(
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
    if changed != 1:
        return None
    announce_finished(claim.job_id)
    return JobStatus.FAILED


# -- the reaper -------------------------------------------------------------------------


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
    waiting = db.session.scalars(
        select(Job.id).where(
            Job.status.in_(CLAIMABLE_STATUSES),
            func.coalesce(Job.run_after, Job.updated_at) <= stale_before,
        )
    ).all()
    for job_id in waiting:
        if queued_job_ids is not None and job_id in queued_job_ids:
            continue
        enqueue_job(job_id)
        counts["reenqueued"] += 1
    db.session.commit()
    if any(counts.values()):
        log.info("reaper: %s", counts)
    return counts
