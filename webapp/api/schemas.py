"""Response schemas (marshmallow, serialized and documented by flask-smorest)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields

from webapp import inputs, urls
from webapp.auth import signed
from webapp.jobs import JobStatusRead
from webapp.models import (
    NEVER,
    DeliveryStatus,
    Job,
    JobStatus,
    Media,
    media_expired,
    now_utc,
    utc_text,
)


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
        """Absolute download URL (signed with accounts on)."""
        return urls.media_url(media.id)

    def get_thumbnail_url(self, media: Media) -> str:
        """Absolute thumbnail URL (signed with accounts on)."""
        return urls.thumbnail_url(media.id)


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
        """Download path, relative as the guide lists it (signed with accounts on)."""
        return signed(urls.media_path(media.id))


INPUT_ITEM = {
    "type": "object",
    "required": ["role", "id", "url"],
    "properties": {
        "role": {"type": "string", "enum": list(inputs.ROLES)},
        "id": {"type": "string", "description": "The upload's id"},
        "url": {"type": "string", "description": "Absolute download URL (signed with accounts on)"},
    },
}
"""One picture of a job's `inputs` (documented; built by `input_items`)."""


def input_items(parameters: dict[str, Any]) -> list[dict[str, str]]:
    """What the status body lists of a job's input pictures."""
    return [
        {"role": role, "id": upload_id, "url": urls.upload_url(upload_id)}
        for role, upload_id in inputs.input_items(parameters)
    ]


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
    provider_output = fields.Dict(
        allow_none=True,
        metadata={
            "description": "What the provider reported about the run, once completed: "
            "OpenAI's `revised_prompt` and `usage`, the `seed` a server used"
        },
    )
    media = fields.List(
        fields.Nested(MediaSummarySchema),
        attribute="media_or_none",
        allow_none=True,
        metadata={"description": "null until the job has outputs"},
    )
    inputs = fields.Method(
        "get_inputs",
        required=True,
        metadata={
            "type": "array",
            "items": INPUT_ITEM,
            "description": "The pictures the job takes (image, then mask); empty for none",
        },
    )
    progress = fields.Float(required=True)

    def get_inputs(self, job: Job) -> list[dict[str, str]]:
        """The job's input pictures."""
        return input_items(job.parameters)


# -- the status body, built from the rows without marshmallow ----------------------------
#
# The status endpoint is the one clients poll in a loop; marshmallow's per-field machinery
# cost as much as reading the row. So the body is built by a plan made once from the schemas
# above, which stay the one list of the status fields (names, order, types, documentation):
# the query reads exactly the columns they name, and the tests hold `JobSchema().dump(job)`
# and `job_status_body` equal for every kind of job.


def _plan(schema: type[ma.Schema], columns: set[str]) -> tuple[tuple[str, str, str], ...]:
    """(key, attribute, how) per field: "time", "float", "column", or "derived"."""
    plan = []
    for key, field in schema._declared_fields.items():
        attr = field.attribute or key
        if attr not in columns:
            how = "derived"
        elif isinstance(field, UTCDateTime):
            how = "time"
        elif isinstance(field, fields.Float):
            how = "float"
        else:
            how = "column"
        plan.append((key, attr, how))
    return tuple(plan)


_JOB_PLAN = _plan(JobSchema, {c.key for c in Job.__mapper__.column_attrs})
_MEDIA_PLAN = _plan(MediaSummarySchema, {c.key for c in Media.__mapper__.column_attrs})
STATUS_JOB_COLUMNS = tuple(attr for _, attr, how in _JOB_PLAN if how != "derived")
# `expired` is derived from both retention timestamps.
STATUS_MEDIA_COLUMNS = (
    *(attr for _, attr, how in _MEDIA_PLAN if how != "derived"),
    "purged_at",
)


def _fill(body: dict[str, Any], plan: tuple[tuple[str, str, str], ...], row: Any) -> None:
    """Copy the stored fields of `plan` from a row into `body`, converted as JSON shows them."""
    for key, attr, how in plan:
        if how == "time":
            body[key] = utc_text(row[attr])
        elif how == "float":
            body[key] = float(row[attr])
        elif how == "column":
            body[key] = row[attr]


def job_status_body(read: JobStatusRead) -> dict[str, Any]:
    """What `JobSchema` dumps for a job, built straight from the rows of `read_job_status`."""
    now = now_utc()
    media = []
    for row in read.media:
        item: dict[str, Any] = {}
        _fill(item, _MEDIA_PLAN, row)
        derived = {
            "url": urls.media_url(row["id"]),
            "thumbnail_url": urls.thumbnail_url(row["id"]),
            "expired": media_expired(row["expires_at"], row["purged_at"], now),
        }
        media.append({key: item[key] if key in item else derived[key] for key, _, _ in _MEDIA_PLAN})
    job = read.job
    stored: dict[str, Any] = {}
    _fill(stored, _JOB_PLAN, job)
    started, completed = job["started_at"], job["completed_at"]
    derived = {
        "duration_seconds": None
        if started is None or completed is None
        else round((completed - started).total_seconds(), 3),
        "media": media or None,
        "inputs": input_items(job["parameters"]),
    }
    return {key: stored[key] if key in stored else derived[key] for key, _, _ in _JOB_PLAN}


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


class UploadSchema(ma.Schema):
    """An uploaded picture."""

    id = fields.String(required=True)
    url = fields.Method(
        "get_url",
        required=True,
        metadata={"description": "Absolute download URL (signed with accounts on)"},
    )
    mime_type = fields.String(
        required=True, metadata={"enum": ["image/png", "image/jpeg", "image/webp"]}
    )
    width = fields.Integer(required=True, metadata={"description": "Upright, after EXIF rotation"})
    height = fields.Integer(required=True)
    file_size_bytes = fields.Integer(
        required=True, metadata={"description": "Of the stored copy (metadata stripped)"}
    )
    sha256 = fields.String(
        required=True,
        metadata={"description": "Of the bytes sent: the same bytes give the same upload"},
    )
    expires_at = fields.Method(
        "get_expires_at",
        required=True,
        allow_none=True,
        metadata={
            "type": "string",
            "format": "date-time",
            "description": "When it is removed: 24 hours after it was sent, or once the "
            "media of the jobs that use it expire; null while such a job keeps its media "
            "for ever (`DARKROOM_RETENTION_DAYS=0`)",
        },
    )

    def get_url(self, upload: Any) -> str:
        """Absolute download URL (signed with accounts on)."""
        return urls.upload_url(upload.id)

    def get_expires_at(self, upload: Any) -> str | None:
        """The expiry, or None for an upload kept as long as its jobs."""
        return None if upload.expires_at >= NEVER else utc_text(upload.expires_at)


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
    inputs = fields.List(
        fields.String(metadata={"enum": ["image", "mask"]}),
        required=True,
        metadata={"description": "The pictures it takes as inputs; others are refused (422)"},
    )
    required_inputs = fields.List(
        fields.String(metadata={"enum": ["image", "mask"]}),
        required=True,
        metadata={"description": "The pictures it cannot run without (a job without is a 422)"},
    )
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


class BackendHealthSchema(ma.Schema):
    """One server of a self-hosted provider (AUTOMATIC1111/Forge, ComfyUI)."""

    provider = fields.String(required=True, metadata={"enum": ["a1111", "comfyui"]})
    url = fields.String(required=True, metadata={"description": "Without credentials"})
    status = fields.String(required=True, metadata={"enum": ["up", "down"]})
    models = fields.Integer(required=True, metadata={"description": "How many it offers"})
    last_error = fields.String(allow_none=True, metadata={"description": "Why it is down"})
    retry_at = UTCDateTime(allow_none=True, metadata={"description": "When it is tried again"})
    checked_at = UTCDateTime(allow_none=True)


class HealthSchema(ma.Schema):
    """The service's health."""

    status = fields.String(required=True, metadata={"enum": ["healthy", "degraded", "unhealthy"]})
    version = fields.String(required=True)
    environment = fields.String(required=True)
    services = fields.Nested(HealthServicesSchema, required=True)
    backends = fields.List(
        fields.Nested(BackendHealthSchema),
        required=True,
        metadata={"description": "The servers of self-hosted providers (empty for none)"},
    )
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
        metadata={"enum": [s.value for s in DeliveryStatus]},
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
