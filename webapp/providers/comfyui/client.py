"""ComfyUI's HTTP API on one server: object info, queueing a prompt, its history, the queue,
interrupts, picture uploads and output downloads.

Every failure becomes a provider error whose message starts "ComfyUI error:". A server that
does not answer (refused, reset, timed out), answers as a dead proxy does (502, 503, 504) or
refuses our credentials (401, 403) is `BackendDown`: the job moves to another server. Other
5xx answers are transient; a refused workflow (400) and the other 4xx are permanent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from PIL import Image

from webapp.providers.backends import Backend, BackendDown
from webapp.providers.base import PermanentProviderError, ProviderError, TransientProviderError
from webapp.providers.pictures import decode_image

log = logging.getLogger(__name__)

API_ERROR = "ComfyUI error"
MAX_DETAIL = 500
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # per output file
MAX_PIXELS = 50_000_000  # per picture, read from its header before decoding
DOWN_STATUSES = (401, 403, 502, 503, 504)
INPUT_SUBFOLDER = "darkroom"  # where our input pictures go in the server's input folder
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """How to talk to the ComfyUI servers, read from the app's configuration."""

    connect_timeout: float
    read_timeout: float
    deadline_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Settings from the `COMFYUI_*` keys."""
        return cls(
            connect_timeout=float(config["COMFYUI_CONNECT_TIMEOUT"]),
            read_timeout=float(config["COMFYUI_READ_TIMEOUT"]),
            deadline_seconds=float(config["COMFYUI_DEADLINE_SECONDS"]),
        )


class ComfyUIClient:
    """One attempt's worth of calls to one server; use it as a context manager."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        from webapp import __version__

        self.backend, self.settings = backend, settings
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"Darkroom/{__version__}"
        if backend.auth is not None:
            self.session.auth = backend.auth

    def __enter__(self) -> ComfyUIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    # -- the API --------------------------------------------------------------------------

    def object_info(self) -> dict[str, Any]:
        """Every node type the server has, with its inputs (and their choices)."""
        return self._json("GET", "/object_info")

    def queue_prompt(self, workflow: dict[str, Any], client_id: str, prompt_id: str) -> str:
        """Queue a workflow; the prompt id the server gave it (ours, on servers that take
        one). A workflow the server refuses is a permanent error naming what it refused."""
        body = {"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id}
        answer = self._json("POST", "/prompt", body=body)
        queued = answer.get("prompt_id")
        if not isinstance(queued, str) or not queued:
            raise TransientProviderError(f"{API_ERROR}: the queued prompt has no id")
        return queued

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """A finished prompt's history entry (outputs and status); None while it waits or
        runs, and for a prompt the server does not know."""
        entry = self._json("GET", f"/history/{prompt_id}").get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def place(self, prompt_id: str) -> str | None:
        """Where a prompt is in the server's queue: "running", "pending", or None."""
        queue = self._json("GET", "/queue")
        for place, key in (("running", "queue_running"), ("pending", "queue_pending")):
            items = queue.get(key)
            for item in items if isinstance(items, list) else []:
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return place
        return None

    def delete_from_queue(self, prompt_id: str) -> None:
        """Take a waiting prompt off the queue (a running one is left alone)."""
        self._call("POST", "/queue", body={"delete": [prompt_id]}).close()

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt the running prompt. The id makes newer servers stop only that prompt;
        older ones stop whatever runs, so this is only sent when ours is the one running."""
        self._call("POST", "/interrupt", body={"prompt_id": prompt_id}).close()

    def stop(self, prompt_id: str) -> str | None:
        """Stop a prompt: interrupt it when it runs, take it off the queue when it waits;
        what was done ("interrupted", "removed") or None when it is in neither."""
        place = self.place(prompt_id)
        if place == "pending":
            self.delete_from_queue(prompt_id)
            # It may have started between the two requests.
            if self.place(prompt_id) != "running":
                return "removed"
            place = "running"
        if place == "running":
            self.interrupt(prompt_id)
            return "interrupted"
        return None

    def stop_quietly(self, prompt_id: str) -> None:
        """Stop a prompt, logging instead of raising: used while already giving up."""
        try:
            done = self.stop(prompt_id)
            log.info("comfyui prompt %s on %s: %s", prompt_id, self.backend.name, done or "ended")
        except ProviderError as exc:
            log.warning("could not stop comfyui prompt %s: %s", prompt_id, exc.message)

    def upload_image(self, data: bytes, name: str, mime_type: str) -> str:
        """Put a picture in the server's input folder (replacing one of the same name); the
        name LoadImage takes it by."""
        files = {"image": (name, data, mime_type)}
        form = {"overwrite": "true", "type": "input", "subfolder": INPUT_SUBFOLDER}
        answer = self._json("POST", "/upload/image", files=files, data=form)
        stored, subfolder = answer.get("name"), answer.get("subfolder") or ""
        if not isinstance(stored, str) or not stored:
            raise TransientProviderError(f"{API_ERROR}: the uploaded picture has no name")
        return f"{subfolder}/{stored}" if subfolder else stored

    def view(self, image: dict[str, Any]) -> bytes:
        """An output file's bytes (a history entry's `{"filename", "subfolder", "type"}`)."""
        params = {
            "filename": image["filename"],
            "subfolder": image.get("subfolder") or "",
            "type": image.get("type") or "output",
        }
        response = self._call("GET", "/view", params=params, stream=True)
        with response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_OUTPUT_BYTES:
                raise _too_large()
            data = bytearray()
            try:
                for chunk in response.iter_content(_CHUNK):
                    data += chunk
                    if len(data) > MAX_OUTPUT_BYTES:
                        raise _too_large()
            except requests.RequestException as exc:
                raise self._unreachable(exc, "GET /view") from None
        return bytes(data)

    # -- the websocket's address ----------------------------------------------------------

    def websocket_url(self, client_id: str) -> str:
        """The server's `/ws` for a client id (ws:// or wss://, as the base URL)."""
        scheme, rest = self.backend.url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"

    def websocket_headers(self) -> list[str]:
        """Headers the websocket handshake needs (the server's credentials)."""
        if self.session.auth is None:
            return []
        request = requests.Request("GET", self.backend.url, auth=self.session.auth).prepare()
        return [f"Authorization: {request.headers['Authorization']!s}"]

    # -- plumbing -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        what = f"{method} {path}"
        try:
            response = self.session.request(
                method,
                f"{self.backend.url}{path}",
                json=body,
                params=params,
                files=files,
                data=data,
                stream=stream,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc, what) from None
        if response.status_code >= 300:
            with response:
                raise self._status_error(response, what)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._call(method, path, **kwargs)
        with response:
            try:
                answer = response.json()
            except (ValueError, requests.RequestException):
                answer = None
        if not isinstance(answer, dict):
            raise TransientProviderError(
                f"{API_ERROR}: the answer of {self.backend.name} to {method} {path} was not "
                "a JSON object",
                details={"server": self.backend.name},
            )
        return answer

    def _unreachable(self, exc: requests.RequestException, what: str) -> BackendDown:
        name = self.backend.name
        if isinstance(exc, requests.ConnectTimeout):
            reason = f"timed out connecting to {name}"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer from {name} within {self.settings.read_timeout:g} s"
        elif isinstance(exc, requests.ConnectionError):
            reason = f"connection to {name} failed"
        else:  # the exception's text could quote the URL's credentials; its name cannot
            reason = f"{type(exc).__name__} talking to {name}"
        return BackendDown(
            self.backend, f"{API_ERROR}: {reason} ({what})", details={"server": name}
        )

    def _status_error(self, response: requests.Response, what: str) -> ProviderError:
        code, name = response.status_code, self.backend.name
        details: dict[str, Any] = {"server": name, "status_code": code}
        if code in DOWN_STATUSES:
            reason = "refused our credentials" if code in (401, 403) else "answered"
            return BackendDown(
                self.backend,
                f"{API_ERROR}: {name} {reason} (HTTP {code}) to {what}",
                details=details,
            )
        if code == 400 and what == "POST /prompt":
            return refused_workflow(response, details)
        if code >= 500:
            return TransientProviderError(
                f"{API_ERROR}: {name} failed (HTTP {code}) on {what}", details=details
            )
        return PermanentProviderError(
            f"{API_ERROR}: {name} refused {what} (HTTP {code})", details=details
        )


def refused_workflow(response: requests.Response, details: dict[str, Any]) -> ProviderError:
    """The error for a workflow `POST /prompt` refused: its message and each node's."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    error = answer.get("error")
    parts = [_describe(error) if isinstance(error, dict) else str(error or "workflow refused")]
    node_errors = answer.get("node_errors")
    for node_id, problem in (node_errors if isinstance(node_errors, dict) else {}).items():
        if not isinstance(problem, dict):
            continue
        for item in problem.get("errors") or []:
            if isinstance(item, dict):
                kind = problem.get("class_type", "?")
                parts.append(f"node {node_id} ({kind}): {_describe(item)}")
    text = " ".join("; ".join(parts).split())[:MAX_DETAIL]
    return PermanentProviderError(f"{API_ERROR}: {text}", details={**details, "detail": text})


def _describe(error: dict[str, Any]) -> str:
    message = str(error.get("message") or error.get("type") or "error")
    extra = str(error.get("details") or "")
    return f"{message}: {extra}" if extra else message


def _too_large() -> PermanentProviderError:
    return PermanentProviderError(f"{API_ERROR}: an output file is larger than {MAX_OUTPUT_BYTES}")


def decode_picture(data: bytes, what: str) -> Image.Image:
    """Decode a picture the server sent (PNG, JPEG or WebP), refusing oversized or broken
    ones."""
    return decode_image(data, MAX_PIXELS, API_ERROR, what)
