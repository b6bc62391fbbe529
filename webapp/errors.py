"""Errors mapped to responses in one place: JSON under /api/, HTML pages elsewhere."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from flask import Flask, Response, jsonify, make_response, render_template, request
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    ServiceUnavailable,
    TooManyRequests,
)

from webapp.accounts import QuotaUsed
from webapp.auth import retry_after_midnight
from webapp.bodies import LargerThanBesidesPictures
from webapp.facade import errors as facade_errors
from webapp.jobs import JobNotCancellable, JobNotFound
from webapp.media import MediaExpired, MediaNotFound, StorageUnavailable
from webapp.paths import is_facade_path, is_machine_path
from webapp.uploads import UploadExpired, UploadNotFound, UploadTooLarge
from webapp.validation import BodyNotJson, RequestInvalid
from webapp.webhooks import DeliveryInProgress, NoWebhook

log = logging.getLogger(__name__)

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_ID_KEY = "darkroom.request_id"


def request_id() -> str:
    """This request's id: the client's `X-Request-ID` if sane, else a new one."""
    # Kept on the request, not on `g`: `g` belongs to the app context, which several
    # requests share whenever one is already pushed (tests, CLI), and would leak ids.
    if _REQUEST_ID_KEY not in request.environ:
        sent = request.headers.get("X-Request-ID", "")
        request.environ[_REQUEST_ID_KEY] = (
            sent if _CLIENT_ID.fullmatch(sent) else f"req_{secrets.token_hex(8)}"
        )
    return str(request.environ[_REQUEST_ID_KEY])


def wants_json() -> bool:
    """API paths answer JSON; the pages answer HTML."""
    return is_machine_path(request.path)


def json_error(status: int, body: dict[str, Any]) -> Response:
    """A JSON error answer carrying the request id (in OpenAI's shape on the face's paths,
    with the id in the `X-Request-ID` header only)."""
    if is_facade_path(request.path):
        status, body = facade_errors.from_guide(status, body)
        response = jsonify(body)
    else:
        response = jsonify({**body, "request_id": request_id()})
    response.status_code = status
    return response


def _page_or_json(status: int, detail: str) -> Response | tuple[str, int]:
    if wants_json():
        return json_error(status, {"detail": detail})
    return render_template("error.html", status=status, detail=detail), status


DOMAIN_ERRORS: dict[type[Exception], tuple[int, str | None]] = {
    JobNotFound: (404, "Job not found"),
    JobNotCancellable: (409, None),  # its own message names the state
    NoWebhook: (409, "Job has no webhook_url or has not finished yet"),
    DeliveryInProgress: (409, "A delivery of this event is already waiting or running"),
    MediaNotFound: (404, "Media not found"),
    MediaExpired: (410, "Media has expired"),
    UploadNotFound: (404, "Upload not found"),
    UploadExpired: (410, "Upload has expired"),
    UploadTooLarge: (413, None),
}
"""Domain exceptions and their answers: (status, detail; None: the exception's message)."""


def _domain_handler(status: int, detail: str | None) -> Any:
    def handle(exc: Exception) -> Any:
        return _page_or_json(status, detail if detail is not None else str(exc))

    return handle


def register_errors(app: Flask) -> None:
    """Install the handlers (after flask-smorest's, so ours win) and the request-id hooks."""

    @app.before_request
    def assign_request_id() -> None:
        request_id()

    @app.after_request
    def stamp_response(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.errorhandler(RequestInvalid)
    def invalid(exc: RequestInvalid) -> Response:
        return json_error(422, {"detail": exc.errors})

    @app.errorhandler(BodyNotJson)
    def not_json(exc: BodyNotJson) -> Response:
        return json_error(400, {"detail": f"Request body is not valid JSON: {exc}"})

    for error, (status, detail) in DOMAIN_ERRORS.items():
        app.register_error_handler(error, _domain_handler(status, detail))

    @app.errorhandler(facade_errors.FacadeError)
    def facade_error(exc: facade_errors.FacadeError) -> Response:
        return facade_errors.answer(exc.status, exc.message, exc.param, exc.code)

    @app.errorhandler(StorageUnavailable)
    def storage_unavailable(exc: StorageUnavailable) -> Any:
        paused = "Uploads" if (request.endpoint or "").startswith("uploads.") else "New jobs"
        detail = f"{paused} are paused: {exc}. Try again later."
        return http_error(ServiceUnavailable(detail, retry_after=StorageUnavailable.RETRY_AFTER))

    @app.errorhandler(QuotaUsed)
    def quota_used(exc: QuotaUsed) -> Any:
        retry_after = retry_after_midnight(exc.resets_at)
        return http_error(TooManyRequests(str(exc), retry_after=retry_after))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if isinstance(exc, InternalServerError):
            return server_error(exc)
        status = exc.code or 500
        detail = exc.description or exc.name
        if status == 413 and not isinstance(exc, LargerThanBesidesPictures):
            limit = request.max_content_length  # this endpoint's (see `webapp.bodies`)
            detail = f"Request body is larger than the limit of {limit} bytes"
        elif status == 404 and wants_json():
            detail = "Not found"
        elif status == 405:
            detail = f"Method {request.method} is not allowed here"
        response = make_response(_page_or_json(status, detail))
        # Only the headers that belong to the error (werkzeug's also name an HTML body).
        for header, value in exc.get_headers():
            if header.lower() in ("allow", "retry-after", "content-range"):
                response.headers[header] = value
        return response

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Any:
        original = getattr(exc, "original_exception", None) or exc
        log.error("unhandled error [%s]", request_id(), exc_info=original)
        if wants_json():
            return json_error(
                500, {"error": "Internal server error", "message": "An unexpected error occurred"}
            )
        return render_template("error.html", status=500, detail="Something went wrong"), 500
