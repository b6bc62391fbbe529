"""The request side of jobs: submit, read, list, cancel, delete, and the time estimate.

The jobs table is the queue of record and Huey only rings the doorbell (`webapp.queue`).
What a worker does with a job (claim, heartbeat, fenced writes, finish, fail, reap) is in
`webapp.attempts`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from flask import current_app
from sqlalchemy import RowMapping, Select, Table, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from webapp import inputs
from webapp.accounts import take_quota
from webapp.database import rows_changed, single_read, write_transaction
from webapp.extensions import db
from webapp.job_counts import count_active, count_jobs
from webapp.media import StorageUnavailable, remove_files, storage_problem
from webapp.models import ACTIVE_STATUSES, Job, JobStatus, Media, now_utc
from webapp.providers import available_models, default_model_id
from webapp.providers.base import MAX_SEED
from webapp.providers.mapping import SIZE_KEYS, resolve_parameters
from webapp.queue import enqueue_job, enqueue_upstream_cancel
from webapp.signals import announce_finished
from webapp.validation import JobCreate, check_model_parameters, check_webhook_url, invalid

log = logging.getLogger(__name__)


class JobNotFound(Exception):
    """No job has this id."""


class JobNotCancellable(Exception):
    """The job already ended and can no longer be cancelled."""

    def __init__(self, status: JobStatus) -> None:
        super().__init__(f"Cannot cancel job in {status} state")
        self.status = status


def get_job(job_id: str, owner: str | None = None) -> Job:
    """Fetch a job or raise `JobNotFound`; with an `owner`, another user's job is not found
    either (exactly as a missing one: nobody learns which ids exist)."""
    # The media come in the same query: every caller shows them.
    job = db.session.get(Job, job_id, options=[joinedload(Job.media)])
    if job is None or (owner is not None and job.owner_id != owner):
        raise JobNotFound(job_id)
    return job


@dataclass(frozen=True)
class JobStatusRead:
    """A job's columns and its media's, as plain mappings (see `read_job_status`)."""

    job: RowMapping
    media: list[dict[str, Any]]


@functools.cache
def _status_query(job_columns: tuple[str, ...], media_columns: tuple[str, ...]) -> Select[Any]:
    """One Core statement for a job's columns and each of its media's, media in order."""
    return (
        select(
            *(getattr(Job, name).label(name) for name in job_columns),
            *(getattr(Media, name).label(f"media_{name}") for name in media_columns),
        )
        .outerjoin(Media, Media.job_id == Job.id)
        .where(Job.id == bindparam("job_id"))
        .order_by(Media.position)
    )


def read_job_status(
    job_id: str,
    job_columns: tuple[str, ...],
    media_columns: tuple[str, ...],
    owner: str | None = None,
) -> JobStatusRead:
    """The named columns of a job and of its media in one query, or raise `JobNotFound`.

    No ORM objects: their identity map and relationship loading cost more than the whole
    rest of the status request, which clients poll in a loop. The caller names the columns
    (the API's status schema is their one list) and the media's `id` must be among them.
    With an `owner`, another user's job is not found (compared here: a condition in the
    statement made SQLite's plan cost a fifth more).
    """
    if owner is not None and "owner_id" not in job_columns:
        job_columns = (*job_columns, "owner_id")
    with single_read() as conn:
        rows = conn.execute(_status_query(job_columns, media_columns), {"job_id": job_id}).all()
    if not rows or (owner is not None and rows[0]._mapping["owner_id"] != owner):
        raise JobNotFound(job_id)
    media = [
        {name: row._mapping[f"media_{name}"] for name in media_columns}
        for row in rows
        if row._mapping["media_id"] is not None
    ]
    return JobStatusRead(job=rows[0]._mapping, media=media)


# -- submitting -------------------------------------------------------------------------


# The attributes a submission sets (all that the new job's answer and card show), by the
# table column each is stored in; the table's defaults fill the rest.
_SUBMITTED_COLUMNS = {
    attr: Job.__mapper__.columns[attr].key
    for attr in (
        "id", "status", "prompt", "model", "parameters", "provider_parameters", "warnings",
        "webhook_url", "client_metadata", "progress", "retry_count", "max_retries", "client_ip",
        "owner_id", "created_at", "updated_at",
    )
}  # fmt: skip
_INSERT_JOB = cast(Table, Job.__table__).insert()


def submit_job(
    request: JobCreate, client_ip: str | None = None, owner_id: str | None = None
) -> Job:
    """Validate a request against its model, store the job and ring the queue's doorbell.

    A job with an owner counts against the owner's daily quota (`accounts.QuotaUsed`).
    """
    models = available_models()
    model_id = request.model or default_model_id(models)
    spec = models.get(model_id)
    if spec is None:
        choices = ", ".join(f"'{m}'" for m in models)
        raise invalid(
            "model_unknown", ["body", "model"], f"Input should be one of: {choices}", model_id
        )
    check_model_parameters(spec, request.parameters)
    check_webhook_url(request.webhook_url)
    requested = request.requested_parameters()
    inputs.check_inputs(spec, requested)
    if "seed" not in requested and spec.param("seed") is not None:
        # Recorded with the request, so anyone can reproduce the picture later.
        requested["seed"] = secrets.randbelow(MAX_SEED + 1)
    problem = storage_problem()
    if problem:  # a job accepted now could only fail: its pictures would have nowhere to go
        raise StorageUnavailable(problem)
    chosen = inputs.choose_inputs(requested, owner_id)
    sized = dict(requested)
    for role, upload in chosen.items():
        requested[role] = sized[role] = upload.id  # a data URI is kept as its upload
    if "image" in chosen and not any(k in requested for k in SIZE_KEYS):
        sized.update(inputs.size_from_image(spec, chosen["image"]))
    resolved, warnings = resolve_parameters(spec, sized)
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
        owner_id=owner_id,
        progress=0.0,
        retry_count=0,
        created_at=now,
        updated_at=now,
    )
    # A Core INSERT of the row: the ORM's unit of work costs more than the statement, and
    # the new job needs none of it (the object above is only handed back, never attached).
    row = {column: getattr(job, attr) for attr, column in _SUBMITTED_COLUMNS.items()}
    for attempt in (1, 2):
        try:
            with write_transaction():
                if owner_id is not None:
                    take_quota(owner_id, now)  # the owner's daily count, with the job
                db.session.connection().execute(_INSERT_JOB, row)
                inputs.record_inputs(job.id, chosen, now)
            break
        except IntegrityError:
            if attempt == 2 or owner_id is None:
                raise  # only the day's first count can meet another's at once
    enqueue_job(job.id)
    return job


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


def list_jobs(
    page: int, per_page: int, status: str | None = None, owner: str | None = None
) -> JobPage:
    """One page of jobs, newest first, optionally of one status and of one owner.

    Ids are read first from the (owner,) (status,) created_at, id index alone, then only that
    page's rows are loaded. Past the middle, the ids are counted from the oldest end instead,
    so the last page costs what the first does.
    """
    where = [Job.status == status] if status else []
    if owner is not None:
        where.append(Job.owner_id == owner)
        total = int(db.session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)
    else:
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
    rows: dict[str, Job] = {}
    if ids:
        load = select(Job).options(selectinload(Job.media)).where(Job.id.in_(ids))
        rows = {job.id: job for job in db.session.scalars(load)}
    return JobPage([rows[i] for i in ids if i in rows], total, page, per_page)


# -- cancelling -------------------------------------------------------------------------


def cancel_job(job_id: str, owner: str | None = None) -> Job:
    """Cancel a waiting or running job at once; the fence keeps a late result out."""
    if owner is not None:
        get_job(job_id, owner)  # another user's job is not found
    now = now_utc()
    with write_transaction():
        changed = rows_changed(
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
    if changed != 1:
        raise JobNotCancellable(job.status)
    if job.provider_job_id:
        enqueue_upstream_cancel(job.id)
    announce_finished(job.id)
    return job


def delete_job(job_id: str, owner: str | None = None) -> None:
    """Delete a job with its media rows and files; a running job is cancelled first.

    Its input pictures go too, unless another job uses them or they were sent less than a
    day ago (then they live out the day an unused upload has).
    """
    with contextlib.suppress(JobNotCancellable):
        cancel_job(job_id, owner)
    with write_transaction():
        job = db.session.get(Job, job_id)
        if job is None:
            raise JobNotFound(job_id)
        paths = [p for m in job.media for p in (m.storage_path, m.thumbnail_path)]
        paths += inputs.release_inputs(job_id, now_utc())
        db.session.execute(delete(Media).where(Media.job_id == job_id))
        db.session.delete(job)
    # Files go after the commit: a failed commit must not leave rows without their files.
    remove_files(*paths)
