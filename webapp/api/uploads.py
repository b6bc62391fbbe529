"""Upload endpoints: send a picture to use as an input, download it, its details, delete."""

from __future__ import annotations

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.exceptions import UnsupportedMediaType

from webapp import uploads
from webapp.api.media import conditional, file_responses, send_stored
from webapp.api.openapi import ERROR_SCHEMAS, errors, operation_ref, rate_limited
from webapp.api.schemas import UploadSchema
from webapp.auth import current_user_id, owner_filter, requires
from webapp.bodies import larger_body
from webapp.media import MediaNotFound
from webapp.models import Upload
from webapp.validation import RequestInvalid, error_item

blp = Blueprint("uploads", __name__, description="Upload pictures to use as inputs")

MULTIPART = "multipart/form-data"
MIME_TYPES = tuple(mime for mime, _ in uploads.ACCEPTED.values())

UPLOAD_BODY = {
    "required": True,
    "content": {
        MULTIPART: {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "A PNG, JPEG or WebP picture (recognised by its "
                        "content), at most `DARKROOM_MAX_UPLOAD_BYTES` and "
                        "`DARKROOM_MAX_UPLOAD_PIXELS`",
                    }
                },
            }
        }
    },
}

CREATED_LINKS = {
    name: {
        "operationRef": operation_ref(path, method),
        "parameters": {"upload_id": "$response.body#/id"},
    }
    for name, path, method in (
        ("GetUpload", "/uploads/{upload_id}", "get"),
        ("GetUploadInfo", "/uploads/{upload_id}/info", "get"),
        ("DeleteUpload", "/uploads/{upload_id}", "delete"),
    )
}
"""Where a new upload can be read and deleted (OpenAPI links, also for stateful fuzzing)."""


def sent_file() -> bytes:
    """The bytes of the body's `file` field (a file part, or a plain field)."""
    if request.mimetype != MULTIPART:
        sent = (request.mimetype or "none")[:100]
        raise UnsupportedMediaType(
            f"Content-Type must be {MULTIPART} with a `file` field (this request sent: {sent})"
        )
    limit = int(current_app.config["MAX_UPLOAD_BYTES"])
    part = request.files.get("file")
    if part is not None:
        return uploads.read_limited(part.stream, limit)
    text = request.form.get("file")
    if text is not None:
        data = text.encode("utf-8", "surrogateescape")
        if len(data) > limit:
            raise uploads.UploadTooLarge(limit)
        return data
    raise RequestInvalid([error_item("missing", list(uploads.FIELD), "Field required", None)])


def send_upload(upload: Upload) -> Response:
    """The stored picture, named by its id; its id is its entity tag (it never changes)."""
    name = f"{upload.id}{upload.file_extension}"
    try:
        return send_stored(upload.storage_path, upload.mime_type, name, upload.id, False)
    except MediaNotFound as exc:
        raise uploads.UploadNotFound(upload.id) from exc


@blp.route("/uploads")
class Uploads(MethodView):
    """Send a picture."""

    @blp.doc(requestBody=UPLOAD_BODY, responses={201: {"links": CREATED_LINKS}})
    @blp.response(201, UploadSchema)
    @blp.alt_response(
        415, schema=ERROR_SCHEMAS["DetailError"], description=f"The body is not `{MULTIPART}`"
    )
    @errors(blp, 413, 422, 503)
    @rate_limited(blp, "RATE_LIMIT_UPLOAD", "upload")  # each one is decoded and re-encoded
    @larger_body("MAX_UPLOAD_BYTES")
    @requires("generate")
    def post(self) -> Upload:
        """Upload a picture (the same bytes again give the same upload)"""
        return uploads.create_upload(sent_file(), current_user_id())


@blp.route("/uploads/<string:upload_id>")
class UploadById(MethodView):
    """One uploaded picture."""

    @blp.doc(responses=file_responses("The stored picture (without its metadata)", MIME_TYPES))
    @errors(blp, 404, 410)
    @requires("read")
    def get(self, upload_id: str) -> Response:
        """Download the picture (supports ETag and Range)"""
        return conditional(send_upload(uploads.get_live_upload(upload_id, owner_filter())))

    @blp.response(204)
    @errors(blp, 404)
    @requires("delete")
    def delete(self, upload_id: str) -> None:
        """Delete the picture and its record"""
        uploads.delete_upload(upload_id, owner_filter())


@blp.route("/uploads/<string:upload_id>/info")
class UploadInfo(MethodView):
    """One uploaded picture's details."""

    @blp.response(200, UploadSchema)
    @errors(blp, 404, 410)
    @requires("read")
    def get(self, upload_id: str) -> Upload:
        """Get the details of an upload"""
        return uploads.get_live_upload(upload_id, owner_filter())
