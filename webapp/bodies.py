"""Request bodies held to the size limit however they are sent, and read faults made 400s.

A chunked body (`Transfer-Encoding: chunked`) has no length to check up front, and Werkzeug
can only stop reading at the limit: the app would get the first `MAX_CONTENT_LENGTH` bytes
as if they were the whole body. So a chunked body is read here, before the app sees the
request, into a spooled buffer: one byte over the limit answers 413 exactly like a sized
body; a malformed or cut-off one answers 400 with one INFO line; and the app then reads a
complete body of known length.

One endpoint takes more than `MAX_CONTENT_LENGTH`: a view method marked with `larger_body`
(the picture upload) may receive its setting's bytes plus room for the multipart framing,
sized or chunked; every other endpoint keeps the app's limit.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask, abort, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from webapp.ratelimit import view_method

log = logging.getLogger(__name__)

PROBLEM = "darkroom.body_problem"
"""The environ key under which a body that could not be taken waits for the app's answer."""

READ_SIZE = 64 * 1024
IN_MEMORY = 1024 * 1024  # larger bodies spill to a temporary file

F = TypeVar("F", bound=Callable[..., Any])
_LIMIT_MARK = "_darkroom_body_limit"
MULTIPART_ROOM = 64 * 1024
"""Bytes a multipart body may hold beyond its file: boundaries, part headers, a file name."""


def larger_body(config_key: str, base64_copies: int = 0) -> Callable[[F], F]:
    """Let an API view method take a body of `config[config_key]` bytes plus the multipart
    framing, or, with `base64_copies`, a JSON body holding that many such files written in
    base64 (data URIs) besides its usual `MAX_CONTENT_LENGTH`; never less than that."""

    def mark(fn: F) -> F:
        setattr(fn, _LIMIT_MARK, (config_key, base64_copies))
        return fn

    return mark


class LargerThanBesidesPictures(RequestEntityTooLarge):
    """A body over the ordinary limit once its data URIs are left out (its own message)."""


def check_beyond_data_uris(body: bytes, limit: int, *paths: tuple[str, ...]) -> None:
    """Hold a JSON body that `larger_body(..., base64_copies=...)` let in to `limit` once
    the data URIs at `paths` are left out: only pictures may make it larger than an ordinary
    body. 413 (RequestEntityTooLarge) otherwise, also for a large body that is not JSON."""
    if len(body) <= limit:
        return
    too_large = LargerThanBesidesPictures(
        f"Request body is larger than the limit of {limit} bytes (pictures sent as data URIs aside)"
    )
    try:
        data = json.loads(body)
    except ValueError:
        raise too_large from None
    pictures = 0
    for path in paths:
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value[:5].lower() == "data:":
            pictures += len(value)
    if len(body) - pictures > limit:
        raise too_large


def body_limit(app: Flask, endpoint: str | None, method: str) -> int | None:
    """The largest body this endpoint and method take."""
    default = app.config.get("MAX_CONTENT_LENGTH")
    view = app.view_functions.get(endpoint or "")
    mark = getattr(view_method(view, method), _LIMIT_MARK, None) if view else None
    if mark is None:
        return default
    key, copies = mark
    size = int(app.config[key])
    if copies:
        return int(default or 0) + copies * ((size + 2) // 3 * 4 + 64)
    return max(size + MULTIPART_ROOM, int(default or 0))


def _endpoint_of(app: Flask, environ: dict[str, Any]) -> str | None:
    """The endpoint a request goes to (before Flask routes it), or None."""
    try:
        rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
    except HTTPException:
        return None
    return str(rule.endpoint)


def _chunked(environ: dict[str, Any]) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _read_whole(environ: dict[str, Any], limit: int | None) -> tuple[int, str] | None:
    """Read a chunked body into a buffer the app reads instead; the problem, if any."""
    stream = environ["wsgi.input"]
    buffer = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # noqa: SIM115  # the app reads it
    total = 0
    try:
        while True:
            want = READ_SIZE if limit is None else min(READ_SIZE, limit + 1 - total)
            chunk = stream.read(want)
            if not chunk:
                break
            total += len(chunk)
            buffer.write(chunk)
            if limit is not None and total > limit:
                buffer.close()
                return 413, "too large"
    except OSError as exc:  # the client went away before the last chunk (or sent no end)
        buffer.close()
        return 400, f"The request body was cut off: {type(exc).__name__}"
    except Exception as exc:  # the server's chunk parser refused what it got
        buffer.close()
        return 400, f"The request body is not valid chunked encoding: {type(exc).__name__}"
    buffer.seek(0)
    environ["wsgi.input"] = buffer
    environ["CONTENT_LENGTH"] = str(total)
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return None


class WholeBodies:
    """WSGI middleware: chunked bodies are read whole (or refused) before the app runs."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if _chunked(environ) and not environ.get("CONTENT_LENGTH"):
            endpoint = _endpoint_of(self.app, environ)
            limit = body_limit(self.app, endpoint, environ.get("REQUEST_METHOD", "GET"))
            problem = _read_whole(environ, limit)
            if problem is not None:
                environ[PROBLEM] = problem
                environ["wsgi.input"] = _Empty()
                environ["CONTENT_LENGTH"] = "0"
                environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


class _Empty:
    """The stream the app reads when the body was refused."""

    def read(self, *_args: Any) -> bytes:
        return b""

    def readline(self, *_args: Any) -> bytes:
        return b""


def register_bodies(app: Flask) -> None:
    """Read chunked bodies whole; answer a refused body before any view reads it."""
    app.wsgi_app = WholeBodies(app)  # type: ignore[method-assign]

    @app.before_request
    def refuse_bad_body() -> None:
        if request.method in ("POST", "PUT", "PATCH"):  # the app's limit, or the endpoint's
            request.max_content_length = body_limit(app, request.endpoint, request.method)
        problem = request.environ.get(PROBLEM)
        if problem is None:
            return
        status, detail = problem
        log.info("%s %s: %s (status %d)", request.method, request.path, detail, status)
        abort(status, detail)
