"""OpenAI's Images API in Darkroom's terms: a request becomes a job, a finished job the
answer.

A request names any Darkroom model (`model`; left out: the default model), and its
options become the job's parameters: `n` → `num_outputs`, `size` → `width`/`height`,
`output_format` (`jpeg` → `jpg`), `output_compression` → `output_quality`, and `quality`,
`style`, `background` where the model takes them (a model without them draws without
them: OpenAI's tools send them by habit). The job is an ordinary one: it is in the gallery,
retried, and sends its webhooks (`DARKROOM_OPENAI_WEBHOOK_URL`). The face waits for it to
end (`DARKROOM_OPENAI_WAIT_SECONDS`) by reading its status, and answers in OpenAI's shape:
absolute media URLs (signed with accounts on) or the pictures in base64, with the provider's
`revised_prompt` and `usage` where it reported them.
"""

from __future__ import annotations

import base64
import io
import re
import time
from typing import Any, Literal

from flask import current_app
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webapp import jobs, urls
from webapp.facade.errors import FacadeError, param_of
from webapp.media import resolve
from webapp.models import Job, JobStatus
from webapp.providers import available_models, default_model_id
from webapp.providers.base import ModelSpec
from webapp.uploads import clean_picture
from webapp.validation import JobCreate, RequestInvalid, guide_errors

SIZE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
PASSED_ON = ("quality", "style", "background")
"""OpenAI options given to the model under their own names, when the model takes them."""
POLL_SECONDS = 0.05  # between status reads while waiting: the answer leaves this soon after


class ImageRequest(BaseModel):
    """The options of `POST /v1/images/generations` and `/images/edits` that Darkroom reads;
    any other is ignored, as OpenAI's clients send options of newer models by habit."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = Field(None, min_length=1, max_length=64)
    n: int | None = Field(None, ge=1, le=4)
    size: str | None = Field(None, max_length=16)
    quality: str | None = Field(None, max_length=16)
    style: str | None = Field(None, max_length=16)
    background: str | None = Field(None, max_length=16)
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    response_format: Literal["url", "b64_json"] | None = None
    user: str | None = Field(None, max_length=256)


def parse(data: Any) -> ImageRequest:
    """Validate a request's options; a 400 naming the first bad `param` otherwise."""
    try:
        return ImageRequest.model_validate(data)
    except ValidationError as exc:
        first = guide_errors(exc, "body")[0]
        param = param_of(first["loc"])
        raise FacadeError(
            400, f"Invalid '{param}': {first['msg']}", param=param, code="invalid_value"
        ) from exc


def chosen_model(name: str | None) -> ModelSpec:
    """The model asked for, the default one when none is; 404 for a name no model has."""
    models = available_models()
    if name is None:
        return models[default_model_id(models)]
    spec = models.get(name)
    if spec is None:
        raise FacadeError(
            404,
            f"The model '{name}' does not exist or you do not have access to it. "
            f"Models: {', '.join(models)}",
            param="model",
            code="model_not_found",
        )
    return spec


def job_request(
    options: ImageRequest, spec: ModelSpec, pictures: dict[str, str] | None = None
) -> JobCreate:
    """The Darkroom job for an OpenAI request (with the upload ids of an edit's pictures)."""
    parameters: dict[str, Any] = dict(pictures or {})
    if options.n is not None:
        parameters["num_outputs"] = options.n
    if options.size and options.size != "auto":
        match = SIZE.fullmatch(options.size)
        if match is None:
            raise FacadeError(
                400,
                f"Invalid 'size': {options.size!r} should be WIDTHxHEIGHT (such as 1024x1024) "
                "or auto",
                param="size",
                code="invalid_value",
            )
        parameters["width"], parameters["height"] = int(match[1]), int(match[2])
    if options.output_format:
        parameters["output_format"] = FORMATS[options.output_format]
    if options.output_compression is not None:
        parameters["output_quality"] = max(1, options.output_compression)
    for name in PASSED_ON:
        value = getattr(options, name)
        if value is not None and spec.param(name) is not None:
            parameters[name] = value
    body: dict[str, Any] = {"prompt": options.prompt, "model": spec.id, "parameters": parameters}
    webhook = current_app.config.get("OPENAI_WEBHOOK_URL")
    if webhook:
        body["webhook_url"] = str(webhook)
    if options.user:
        body["metadata"] = {"openai_user": options.user}
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise RequestInvalid(guide_errors(exc, "body")) from exc


def openai_mask(data: bytes) -> bytes:
    """An edit's mask in Darkroom's convention (white: may change) from OpenAI's (a PNG
    whose transparent pixels may change); a mask without transparency is taken as it is."""
    max_pixels = int(current_app.config["MAX_UPLOAD_PIXELS"])
    clean = clean_picture(data, max_pixels)  # checked (size first) and re-encoded
    with Image.open(io.BytesIO(clean.data)) as picture:
        if picture.mode not in ("RGBA", "LA", "PA") and "transparency" not in picture.info:
            return data
        alpha = picture.convert("RGBA").getchannel("A")
    changeable = alpha.point(lambda value: 255 - value)
    buffer = io.BytesIO()
    changeable.save(buffer, "PNG")
    return buffer.getvalue()


# -- waiting, and the answer -------------------------------------------------------------


def wait_for(job_id: str) -> Job:
    """The job once it has ended, read every `POLL_SECONDS`; 504 when the wait runs out
    (the job keeps running: its id is in the message)."""
    seconds = float(current_app.config["OPENAI_WAIT_SECONDS"])
    deadline = time.monotonic() + seconds
    columns = ("status",)
    while True:
        status = jobs.read_job_status(job_id, columns, ("id",)).job["status"]
        if JobStatus(status).terminal:
            return jobs.get_job(job_id)
        if time.monotonic() >= deadline:
            raise FacadeError(
                504,
                f"The image is not ready after {seconds:g} s. Darkroom job {job_id} keeps "
                f"running: GET {urls.job_status_path(job_id)} (it is in the gallery too)",
                code="timeout",
            )
        time.sleep(POLL_SECONDS)  # a greenlet's pause under gevent: others go on


def answer(job: Job, response_format: str | None) -> dict[str, Any]:
    """OpenAI's answer for an ended job; 502/500 with the job's error when it failed."""
    if job.status != JobStatus.COMPLETED:
        message = job.error_message or f"The generation was {job.status}"
        status = 500 if job.model == "demo" and job.status == JobStatus.FAILED else 502
        raise FacadeError(status, f"{message} (Darkroom job {job.id})", code="generation_failed")
    reported = job.provider_output or {}
    items = []
    for media in job.media:
        if response_format == "b64_json":
            data = resolve(media.storage_path).read_bytes()
            item: dict[str, Any] = {"b64_json": base64.b64encode(data).decode("ascii")}
        else:
            item = {"url": urls.media_url(media.id)}
        if reported.get("revised_prompt"):
            item["revised_prompt"] = reported["revised_prompt"]
        items.append(item)
    body: dict[str, Any] = {"created": int(job.created_at.timestamp()), "data": items}
    if job.media:
        first = job.media[0]
        body["size"] = f"{first.width}x{first.height}"
        body["output_format"] = first.file_extension.lstrip(".").replace("jpg", "jpeg")
    for name in ("quality", "background"):
        if job.provider_parameters.get(name):
            body[name] = job.provider_parameters[name]
    if isinstance(reported.get("usage"), dict):
        body["usage"] = reported["usage"]
    return body
