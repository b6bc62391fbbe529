"""Database models: jobs, their media, uploaded input pictures, webhook events, the workers
seen recently, and the accounts (users, their API keys, share links) that own jobs once
`DARKROOM_AUTH=on`.

The two state machines live here as enums (`JobStatus`, `DeliveryStatus`); their rows store
the same lowercase values they always did.
"""

from __future__ import annotations

import base64
import enum
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import Model


def now_utc() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def utc_text(value: datetime | None) -> str | None:
    """A timestamp as the API writes it: ISO 8601 in UTC, to the second, with a `Z`."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    """Return a fresh random UUID as a string."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and always read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert aware datetimes to naive UTC before storing."""
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Mark stored values as UTC."""
        return value.replace(tzinfo=UTC) if value is not None else None


class StatusType(TypeDecorator[Any]):
    """A `StrEnum` stored as its lowercase value in a short string column."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_class: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_class = enum_class

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Store the value (a member or its text, checked)."""
        return None if value is None else self.enum_class(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        """Read the member back."""
        return None if value is None else self.enum_class(value)


class JobStatus(enum.StrEnum):
    """The job state machine's states."""

    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the state never changes again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING)
# Waiting for a worker to claim them (a first attempt, or the next one after a failure).
CLAIMABLE_STATUSES = (JobStatus.PENDING, JobStatus.RETRYING)


def any_running(jobs: Iterable[Job]) -> bool:
    """Whether any of these jobs has not ended yet (its page keeps polling)."""
    return any(not job.status.terminal for job in jobs)


class DeliveryStatus(enum.StrEnum):
    """A webhook event's delivery states.

    pending → delivering → delivered | retrying → delivering … | failed | gone (the receiver
    answered 410 and asked us to stop).
    """

    PENDING = "pending"
    DELIVERING = "delivering"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    GONE = "gone"


# Due for a delivery attempt once `next_attempt_at` has come (as `CLAIMABLE_STATUSES` for jobs).
CLAIMABLE_DELIVERIES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
REDELIVERABLE_DELIVERIES = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.GONE)
"""Events that may be sent again: one waiting or on its way already will be sent."""


class Job(Model):
    """One generation request and its progress through the state machine."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_created_at", "created_at", "id"),
        Index("ix_jobs_status_created_at", "status", "created_at", "id"),
        Index("ix_jobs_model_completed_at", "model", "completed_at"),
        # One user's work, newest first (lists, gallery, counts, the daily quota).
        Index("ix_jobs_owner_created_at", "owner_id", "created_at", "id"),
        Index("ix_jobs_owner_status_created_at", "owner_id", "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[JobStatus] = mapped_column(StatusType(JobStatus), default=JobStatus.PENDING)
    prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provider_parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # "metadata" is reserved on declarative classes, so the attribute is named differently.
    client_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    progress: Mapped[float] = mapped_column(default=0.0)
    retry_count: Mapped[int] = mapped_column(default=0)
    max_retries: Mapped[int] = mapped_column(default=3)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    provider_job_id: Mapped[str | None] = mapped_column(String(128))
    # The server of a self-hosted provider the current (or last) attempt ran on
    # (`webapp.providers.backends`), and how often the job moved off one that went down.
    backend: Mapped[str | None] = mapped_column(String(300))
    backend_failovers: Mapped[int] = mapped_column(default=0, server_default="0")
    # What the provider reported about the run: OpenAI's revised prompt and token usage,
    # the seed a server really used.
    provider_output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    # Who made it (None: made while accounts were off, until an administrator takes it over).
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    run_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    media: Mapped[list[Media]] = relationship(
        back_populates="job", order_by="Media.position", passive_deletes=True
    )
    # Read only by the job page; a job has at most one event.
    webhook_events: Mapped[list[WebhookEvent]] = relationship(
        order_by="WebhookEvent.created_at", viewonly=True
    )
    # The latest preview of a running job (read only for running cards and pages).
    preview: Mapped[JobPreview | None] = relationship(viewonly=True)

    @property
    def live_preview(self) -> str | None:
        """The running job's latest preview as a `data:` URI, for the page's one poll to
        carry inline (no request per card), or None."""
        if self.status != JobStatus.PROCESSING or self.preview is None:
            return None
        return self.preview.data_uri()

    @property
    def media_or_none(self) -> list[Media] | None:
        """The outputs, or None while there are none (as the API guide shows)."""
        return list(self.media) or None

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from the first start to the end, once both are known."""
        if self.started_at is None or self.completed_at is None:
            return None
        return round((self.completed_at - self.started_at).total_seconds(), 3)


class Media(Model):
    """A stored output file of a job, with its thumbnail."""

    __tablename__ = "media"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    type: Mapped[str] = mapped_column(String(16), default="image")
    mime_type: Mapped[str] = mapped_column(String(64))
    file_extension: Mapped[str] = mapped_column(String(8))
    storage_path: Mapped[str] = mapped_column(String(255))
    thumbnail_path: Mapped[str | None] = mapped_column(String(255))
    file_size_bytes: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Set when retention removed the files; the row stays so its URLs can answer 410.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="media")

    @property
    def expired(self) -> bool:
        """Whether the files are (or may now be) gone: their URLs answer 410."""
        return self.is_expired()

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the retention period has passed (or its files were purged)."""
        return media_expired(self.expires_at, self.purged_at, now or now_utc())


def media_expired(expires_at: datetime | None, purged_at: datetime | None, now: datetime) -> bool:
    """Whether media with these timestamps are past retention (or their files were purged)."""
    return purged_at is not None or (expires_at is not None and expires_at <= now)


class Upload(Model):
    """A picture a client sent as an input, stored stripped of its metadata.

    `sha256` is of the bytes sent (the same bytes from the same owner are one upload);
    `file_size_bytes` is of the stored copy, which is what downloading it returns.
    """

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_owner_sha256", "owner_id", "sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Who sent it (None with accounts off).
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(64))
    file_extension: Mapped[str] = mapped_column(String(8))
    storage_path: Mapped[str] = mapped_column(String(255))
    width: Mapped[int]
    height: Mapped[int]
    file_size_bytes: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether its time is up (the sweep removes it soon)."""
        return self.expires_at <= (now or now_utc())


NEVER = datetime(9999, 1, 1, tzinfo=UTC)
"""The expiry of an upload kept as long as a job that uses it (retention switched off)."""


class JobInput(Model):
    """A picture a job takes as an input: which upload plays which role (`image`, `mask`).

    The upload is not a foreign key: a user may delete it while a job still waits for it,
    and that job then fails with a clear error instead of the delete being refused.
    """

    __tablename__ = "job_inputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(36), index=True)


class BackendState(Model):
    """What is known of one backend of a self-hosted provider, shared by every process:
    whether it answers, the models it offers, and until when a down one is left alone."""

    __tablename__ = "backends"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)  # "provider url"
    provider: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(300))  # without credentials
    up: Mapped[bool] = mapped_column(Boolean, default=True)
    failures: Mapped[int] = mapped_column(default=0)  # in a row; sets the back-off
    down_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    models: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class JobPreview(Model):
    """The latest preview picture of a running job (a small JPEG), for the browser."""

    __tablename__ = "job_previews"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    mime_type: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    def data_uri(self) -> str:
        """The picture as a `data:` URI."""
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


class WorkerBeat(Model):
    """A queue consumer process and when it last said it was alive."""

    __tablename__ = "worker_beats"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)


class WebhookEvent(Model):
    """One event to tell a job's webhook: its stable id and the exact bytes to send."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_status_next", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[DeliveryStatus] = mapped_column(
        StatusType(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempt_count: Mapped[int] = mapped_column(default=0)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="event", order_by="WebhookAttempt.id", passive_deletes=True
    )

    @property
    def can_redeliver(self) -> bool:
        """No attempt waits or runs, so sending it again sends it once more, not twice."""
        return self.status in REDELIVERABLE_DELIVERIES


class WebhookAttempt(Model):
    """One try at delivering an event, as the receiver answered it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    status_code: Mapped[int | None]
    latency_ms: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)

    event: Mapped[WebhookEvent] = relationship(back_populates="attempts")


class User(Model):
    """An account: signs in to the pages and owns API keys, jobs and share links."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Jobs a day: None follows DARKROOM_DAILY_JOB_QUOTA, 0 is unlimited.
    daily_quota: Mapped[int | None]
    # Changed with the password or when disabled: the sessions signed before stop working.
    session_epoch: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", order_by="ApiKey.created_at.desc()", viewonly=True
    )


class JobQuotaDay(Model):
    """How many jobs a user made on one UTC day (accounts on): the daily quota's counter.

    Counted as each job is stored, in the same transaction, and never lowered: deleting a
    job does not give its place back.
    """

    __tablename__ = "job_quota_days"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    count: Mapped[int] = mapped_column(default=0)


class ApiKey(Model):
    """An API key: only its SHA-256 is kept; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # `dr_` and the key's first characters: how people recognise and revoke it.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="api_keys")

    def is_usable(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired."""
        now = now or now_utc()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class ShareLink(Model):
    """A public, read-only link to one job's pictures, prompt and model."""

    __tablename__ = "share_links"

    # The token in the link (`/s/<id>`): random, url-safe, unguessable.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship()

    def is_open(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired."""
        now = now or now_utc()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
