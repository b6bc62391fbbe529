"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Every error answer on the face's paths goes through here: `webapp.errors.json_error` turns
the guide's bodies into this shape, so a tool made for OpenAI never sees the guide's, and
the guide's API never sees this one. The status codes are OpenAI's: a request that does not
validate is a 400 naming the `param` (the guide's 422 becomes that), 401 a missing or wrong
key, 404 an unknown model, 429 a rate limit, 5xx a failed generation.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

# OpenAI's error type and code for each status, when nothing more precise is known.
KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "insufficient_permissions"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", None),
    410: ("invalid_request_error", "gone"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "generation_failed"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}

PARAMS = {
    "num_outputs": "n",
    "width": "size",
    "height": "size",
    "aspect_ratio": "size",
    "output_quality": "output_compression",
    "metadata": "user",
}
"""The face's parameter that an error about one of the job's parameters is about."""


class FacadeError(Exception):
    """An answer of the face's own: status, message, and the param and code it names."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def body(status: int, message: str, param: str | None = None, code: str | None = None) -> Any:
    """The error body for a status."""
    kind, default_code = KINDS.get(status, ("server_error" if status >= 500 else
                                            "invalid_request_error", None))  # fmt: skip
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }


def answer(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> Response:
    """An error answer in OpenAI's shape."""
    response = jsonify(body(status, message, param, code))
    response.status_code = status
    return response


def param_of(loc: list[Any]) -> str | None:
    """The face's parameter a validation error's `loc` is about."""
    names = [str(part) for part in loc if part not in ("body", "parameters", "query")]
    if not names:
        return None
    return PARAMS.get(names[0], names[0])


def from_guide(status: int, guide: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The face's answer for what the guide's API would have answered."""
    detail = guide.get("detail")
    if isinstance(detail, list) and detail:  # the guide's 422: OpenAI says 400, naming param
        first = detail[0]
        message = str(first.get("msg") or "Invalid request")
        param = param_of(list(first.get("loc") or []))
        if param:
            message = f"Invalid '{param}': {message}"
        return 400, body(400, message, param, str(first.get("type") or "invalid_value"))
    if isinstance(detail, str):
        message = detail
    else:
        message = str(guide.get("message") or guide.get("error") or "Request failed")
    if status == 422:
        status = 400
    return status, body(status, message)
