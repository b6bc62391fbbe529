"""The face that speaks OpenAI's Images API under `/v1`, so `base_url="http://host:8000/v1"`
in OpenAI's own SDKs (and every tool built on them) generates through Darkroom.

`POST /v1/images/generations` and `/v1/images/edits` make a Darkroom job, wait for it and
answer in OpenAI's shape (`webapp.facade.images`); `GET /v1/models` lists Darkroom's models.
Keys, scopes, cross-site writes and rate limits are the API's (`webapp.auth`,
`webapp.security`, `webapp.ratelimit`); errors are OpenAI's (`webapp.facade.errors`).
A client that goes away while it waits leaves its job running: it is in the gallery.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from webapp import jobs
from webapp.auth import current_user_id, requires
from webapp.bodies import larger_body
from webapp.facade import images
from webapp.facade.errors import FacadeError
from webapp.inputs import store_picture
from webapp.paths import FACADE_PREFIX
from webapp.providers import available_models
from webapp.ratelimit import limited
from webapp.security import takes_json_body
from webapp.uploads import UploadTooLarge, read_limited
from webapp.validation import RequestInvalid

bp = Blueprint("facade", __name__, url_prefix=FACADE_PREFIX)
MULTIPART = "multipart/form-data"


def _submit(options: images.ImageRequest, pictures: dict[str, str] | None = None) -> Response:
    spec = images.chosen_model(options.model)
    request_body = images.job_request(options, spec, pictures)
    job = jobs.submit_job(request_body, client_ip=request.remote_addr, owner_id=current_user_id())
    finished = images.wait_for(job.id)
    return jsonify(images.answer(finished, options.response_format))


@bp.post("/images/generations")
@takes_json_body
@limited("RATE_LIMIT_CREATE", "create")
@requires("generate")
def generations() -> Response:
    """Generate pictures from a prompt."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise FacadeError(400, "The body should be a JSON object", code="invalid_json")
    return _submit(images.parse(data))


@bp.post("/images/edits")
@larger_body("MAX_UPLOAD_BYTES", base64_copies=2)  # the picture and its mask
@limited("RATE_LIMIT_CREATE", "create")
@requires("generate")
def edits() -> Response:
    """Edit a picture by a prompt, where its mask allows (a multipart form)."""
    if request.mimetype != MULTIPART:
        raise FacadeError(
            415,
            f"Content-Type must be {MULTIPART} with the picture as `image`",
            code="unsupported_media_type",
        )
    sent = request.files.getlist("image") + request.files.getlist("image[]")
    if not sent:
        raise FacadeError(400, "Missing required parameter: 'image'", param="image")
    if len(sent) > 1:
        raise FacadeError(
            400,
            f"Darkroom edits one picture at a time; {len(sent)} were sent as 'image'",
            param="image",
        )
    options = images.parse({**request.form.to_dict(), **_numbers(request.form)})
    owner = current_user_id()
    pictures = {"image": store_picture("image", sent[0].stream, owner).id}
    mask = request.files.get("mask")
    if mask is not None:
        limit = int(current_app.config["MAX_UPLOAD_BYTES"])
        try:
            data = read_limited(mask.stream, limit)
        except UploadTooLarge as exc:
            raise FacadeError(413, str(exc), param="mask") from exc
        try:
            converted = images.openai_mask(data)
        except RequestInvalid as exc:
            raise FacadeError(400, f"Invalid 'mask': {exc.errors[0]['msg']}", param="mask") from exc
        pictures["mask"] = store_picture("mask", converted, owner).id
    return _submit(options, pictures)


def _numbers(form: Any) -> dict[str, Any]:
    """A multipart form's numbers as numbers (its fields are all text)."""
    found: dict[str, Any] = {}
    for name in ("n", "output_compression"):
        value = form.get(name)
        if value is not None:
            try:
                found[name] = int(value)
            except ValueError:
                raise FacadeError(
                    400, f"Invalid '{name}': {value[:40]!r} is not a whole number", param=name
                ) from None
    return found


def _model(model_id: str, provider: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": f"darkroom-{provider}"}


@bp.get("/models")
@requires("generate")  # the face is for clients that generate: their key has this scope
def models() -> Response:
    """Darkroom's models in OpenAI's list shape."""
    listed = [_model(spec.id, spec.provider) for spec in available_models().values()]
    return jsonify({"object": "list", "data": listed})


@bp.get("/models/<path:model_id>")
@requires("generate")
def model(model_id: str) -> Response:
    """One model."""
    spec = images.chosen_model(model_id)
    return jsonify(_model(spec.id, spec.provider))
