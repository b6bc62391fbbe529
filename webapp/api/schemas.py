"""Response schemas (marshmallow, serialized and documented by flask-smorest)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields

from webapp import urls
from webapp.jobs import JobStatusRead
from webapp.models import JobStatus, Media, media_expired, now_utc, utc_text


class UTCDateTime(fields.DateTime):
    """ISO 8601 in UTC with a `Z`, to the second, as the API guide writes timestamps."""

    def _serialize(self, value: datetime | None, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return utc_text(value)


STATUSES = [s.value for s in JobStatus]


class _MediaUrls:
    """Absolute URLs of a media item's file and thumbnail, built from the public base."""

    def get_url(self, media: Media) -> str:
        """Absolute download URL."""
        return urls.absolute(urls.media_path(media.id))

    def get_thumbnail_url(self, media: Media) -> str:
        """Absolute thumbnail URL."""
        return urls.absolute(urls.thumbnail_path(media.id))


class MediaSummarySchema(_MediaUrls, ma.Schema):
    """A media item inside a job's status."""

    id = fields.String(required=True)
    url = fields.Method("get_url", metadata={"description": "Absolute download URL"})
    thumbnail_url = fields.Method("get_thumbnail_url")
    type = fields.String(required=True)
    mime_type = fields.String(required=True)
    file_size_bytes = fields.Integer(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    expires_at = UTCDateTime(allow_none=True)
    expired = fields.Boolean(
        required=True, metadata={"description": "Past retention: its URLs answer 410"}
    )


class MediaLinkSchema(ma.Schema):
    """A media item inside a job of the listing."""

    id = fields.String(required=True)
    url = fields.Method("get_url", metadata={"description": "Download path"})
    type = fields.String(required=True)
    expired = fields.Boolean(required=True)

    def get_url(self, media: Media) -> str:
        """Download path, relative as the guide lists it."""
        return urls.media_path(media.id)


class JobSchema(ma.Schema):
    """A job's full status."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    prompt = fields.String(required=True)
    model = fields.String(required=True)
    parameters = fields.Dict(required=True, metadata={"description": "As requested, with seed"})
    provider_parameters = fields.Dict(metadata={"description": "What the model ran with"})
    warnings = fields.List(fields.String())
    metadata = fields.Dict(attribute="client_metadata", allow_none=True)
    webhook_url = fields.String(allow_none=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)
    started_at = UTCDateTime(allow_none=True)
    completed_at = UTCDateTime(allow_none=True)
    duration_seconds = fields.Float(allow_none=True)
    retry_count = fields.Integer(required=True)
    max_retries = fields.Integer(required=True)
    error_message = fields.String(allow_none=True)
    error_details = fields.Dict(allow_none=True)
    media = fields.List(
        fields.Nested(MediaSummarySchema),
        attribute="media_or_none",
        allow_none=True,
        metadata={"description": "null until the job has outputs"},
    )
    progress = fields.Float(required=True)


def job_status_body(read: JobStatusRead) -> dict[str, Any]:
    """What `JobSchema` dumps for a job, built straight from the rows of `read_job_status`.

    The status endpoint is the one clients poll in a loop; marshmallow's per-field
    machinery cost as much as reading the row. `JobSchema` still documents this body, and
    the tests hold the two equal for every kind of job.
    """
    job = read.job
    base = urls.public_base()
    now = now_utc()
    media = [
        {
            "id": m["id"],
            "url": base + urls.media_path(m["id"]),
            "thumbnail_url": base + urls.thumbnail_path(m["id"]),
            "type": m["type"],
            "mime_type": m["mime_type"],
            "file_size_bytes": m["file_size_bytes"],
            "width": m["width"],
            "height": m["height"],
            "expires_at": utc_text(m["expires_at"]),
            "expired": media_expired(m["expires_at"], m["purged_at"], now),
        }
        for m in read.media
    ]
    started, completed = job.started_at, job.completed_at
    return {
        "id": job.id,
        "status": job.status,
        "prompt": job.prompt,
        "model": job.model,
        "parameters": job.parameters,
        "provider_parameters": job.provider_parameters,
        "warnings": job.warnings,
        "metadata": job.client_metadata,
        "webhook_url": job.webhook_url,
        "created_at": utc_text(job.created_at),
        "updated_at": utc_text(job.updated_at),
        "started_at": utc_text(started),
        "completed_at": utc_text(completed),
        "duration_seconds": None
        if started is None or completed is None
        else round((completed - started).total_seconds(), 3),
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
        "error_message": job.error_message,
        "error_details": job.error_details,
        "media": media or None,
        "progress": float(job.progress),
    }


class JobListItemSchema(ma.Schema):
    """A job in the listing."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    prompt = fields.String(required=True)
    model = fields.String(required=True)
    progress = fields.Float(required=True)
    created_at = UTCDateTime(required=True)
    completed_at = UTCDateTime(allow_none=True)
    media = fields.List(fields.Nested(MediaLinkSchema), required=True)


class JobListSchema(ma.Schema):
    """A page of the job listing."""

    jobs = fields.List(fields.Nested(JobListItemSchema), required=True)
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    has_next = fields.Boolean(required=True)
    has_prev = fields.Boolean(required=True)


class JobCreatedSchema(ma.Schema):
    """The answer to a job submission."""

    id = fields.String(required=True)
    status = fields.String(required=True)
    created_at = UTCDateTime(required=True)
    status_url = fields.String(required=True)
    estimated_completion_time = fields.Integer(
        required=True, metadata={"description": "Seconds, from the queue ahead"}
    )
    model = fields.String(required=True)
    warnings = fields.List(fields.String(), required=True)


class MediaInfoSchema(_MediaUrls, ma.Schema):
    """A media item's details."""

    id = fields.String(required=True)
    job_id = fields.String(required=True)
    type = fields.String(required=True)
    storage_path = fields.String(required=True)
    storage_url = fields.Method("get_url", required=True)
    thumbnail_url = fields.Method("get_thumbnail_url")
    file_size_bytes = fields.Integer(required=True)
    mime_type = fields.String(required=True)
    file_extension = fields.String(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    created_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(allow_none=True)


class ParamSchema(ma.Schema):
    """One parameter of a model."""

    name = fields.String(required=True)
    type = fields.String(required=True)
    default = fields.Raw(allow_none=True)
    minimum = fields.Float()
    maximum = fields.Float()
    choices = fields.List(fields.String())
    description = fields.String()


class ModelSchema(ma.Schema):
    """A model of the registry."""

    id = fields.String(required=True)
    provider = fields.String(required=True)
    label = fields.String(required=True)
    description = fields.String(required=True)
    offline = fields.Boolean(required=True)
    default = fields.Boolean(required=True)
    parameters = fields.List(fields.Nested(ParamSchema), required=True)


class ModelListSchema(ma.Schema):
    """Every model available."""

    default_model = fields.String(required=True)
    models = fields.List(fields.Nested(ModelSchema), required=True)


class HealthServicesSchema(ma.Schema):
    """Which dependencies answer."""

    database = fields.Boolean(required=True)
    queue = fields.Boolean(required=True)
    storage = fields.Boolean(required=True)
    worker = fields.Boolean(required=True)


class HealthSchema(ma.Schema):
    """The service's health."""

    status = fields.String(required=True, metadata={"enum": ["healthy", "degraded", "unhealthy"]})
    version = fields.String(required=True)
    environment = fields.String(required=True)
    services = fields.Nested(HealthServicesSchema, required=True)
    timestamp = UTCDateTime(required=True)


class LiveSchema(ma.Schema):
    """The liveness answer."""

    status = fields.String(required=True)


class ReadySchema(ma.Schema):
    """The readiness answer."""

    status = fields.String(required=True)
    services = fields.Nested(HealthServicesSchema, required=True)


class DetailErrorSchema(ma.Schema):
    """An error with a message."""

    detail = fields.String(required=True)
    request_id = fields.String(required=True)


class ValidationItemSchema(ma.Schema):
    """One validation problem."""

    type = fields.String(required=True)
    loc = fields.List(fields.Raw(), required=True)
    msg = fields.String(required=True)
    input = fields.Raw(allow_none=True)


class ValidationErrorSchema(ma.Schema):
    """The 422 answer: every problem found."""

    detail = fields.List(fields.Nested(ValidationItemSchema), required=True)
    request_id = fields.String(required=True)


class ServerErrorSchema(ma.Schema):
    """The 500 answer."""

    error = fields.String(required=True)
    message = fields.String(required=True)
    request_id = fields.String(required=True)


class WebhookAttemptSchema(ma.Schema):
    """One delivery attempt."""

    attempted_at = UTCDateTime(required=True)
    status_code = fields.Integer(allow_none=True)
    latency_ms = fields.Float(allow_none=True)
    error = fields.String(allow_none=True)
    response_excerpt = fields.String(allow_none=True, metadata={"description": "First KB"})


class WebhookEventSchema(ma.Schema):
    """A webhook event of a job and its delivery attempts."""

    id = fields.String(required=True, metadata={"description": "The stable webhook-id"})
    event_type = fields.String(required=True)
    url = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={"enum": ["pending", "delivering", "retrying", "delivered", "failed", "gone"]},
    )
    attempt_count = fields.Integer(required=True)
    created_at = UTCDateTime(required=True)
    delivered_at = UTCDateTime(allow_none=True)
    next_attempt_at = UTCDateTime(allow_none=True)
    payload = fields.Method("get_payload", required=True)
    attempts = fields.List(fields.Nested(WebhookAttemptSchema), required=True)

    def get_payload(self, event: Any) -> Any:
        """The JSON body that is sent."""
        return json.loads(event.body)


class WebhookListSchema(ma.Schema):
    """A job's webhook deliveries."""

    job_id = fields.String(required=True)
    webhook_url = fields.String(allow_none=True)
    deliveries = fields.List(fields.Nested(WebhookEventSchema), required=True)
