"""AUTOMATIC1111 / Forge's HTTP API (`/sdapi/v1/...`) on one server: its checkpoints,
samplers and schedulers, a txt2img or img2img run, its progress, and interrupting it.

Every failure becomes a provider error that names the server, never its credentials (they
go in an HTTP Basic header, as `--api-auth` expects): a server that does not answer
(refused, reset, timed out, or 502/503/504 from a proxy in front of a dead one) is
`BackendDown`, so the job moves to another server; 429 and other 5xx answers (out of
memory, a checkpoint it no longer has) are transient; 401 (wrong credentials), 404 (no
`--api`, an unknown sampler), 422 and other refusals are permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from webapp.providers.backends import Backend, BackendDown
from webapp.providers.base import PermanentProviderError, ProviderError, TransientProviderError

API_ERROR = "AUTOMATIC1111 error"
QUICK_READ_SECONDS = 30.0
"""How long a read of something the server has at hand (models, progress, an interrupt)
may take; a run's own request waits `A1111_READ_TIMEOUT`."""
MAX_DETAIL = 300
DOWN_STATUSES = (502, 503, 504)  # what a proxy answers for a server behind it that is gone


@dataclass(frozen=True)
class Settings:
    """How to talk to the servers, read from the app's configuration."""

    connect_timeout: float
    read_timeout: float
    poll_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Settings from the `A1111_*` keys."""
        return cls(
            connect_timeout=float(config["A1111_CONNECT_TIMEOUT"]),
            read_timeout=float(config["A1111_READ_TIMEOUT"]),
            # Zero is a valid number setting, but a poll loop without a pause would spin.
            poll_seconds=max(0.01, float(config["A1111_POLL_SECONDS"])),
        )

    @property
    def quick_read(self) -> float:
        """The read timeout of the quick requests (never above the runs' own)."""
        return min(QUICK_READ_SECONDS, self.read_timeout)


class A1111Client:
    """Requests to one server; use it as a context manager, from one thread at a time."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        from webapp import __version__

        self.backend, self.settings = backend, settings
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"Darkroom/{__version__}"
        self.session.auth = backend.auth  # HTTP Basic, as `--api-auth` takes it

    def __enter__(self) -> A1111Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    # -- what the server offers -----------------------------------------------------------

    def checkpoints(self) -> list[dict[str, Any]]:
        """`GET /sdapi/v1/sd-models`: [{title, model_name, hash, sha256, filename, config}]."""
        return _dicts(self.request("GET", "sd-models"), "sd-models")

    def samplers(self) -> list[dict[str, Any]]:
        """`GET /sdapi/v1/samplers`: [{name, aliases, options}]."""
        return _dicts(self.request("GET", "samplers"), "samplers")

    def schedulers(self) -> list[dict[str, Any]] | None:
        """`GET /sdapi/v1/schedulers` (A1111 1.9 and Forge): [{name, label, ...}]; None
        for an older server, which has no such choice."""
        try:
            return _dicts(self.request("GET", "schedulers"), "schedulers")
        except PermanentProviderError as exc:
            if exc.details.get("status_code") == 404:
                return None
            raise

    # -- a run ----------------------------------------------------------------------------

    def generate(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /sdapi/v1/txt2img` or `img2img`: answers once the pictures are done."""
        answer = self.request("POST", kind, body=body, read_timeout=self.settings.read_timeout)
        if not isinstance(answer, dict):
            raise TransientProviderError(f"{API_ERROR}: the answer to {kind} is not an object")
        return answer

    def progress(self, *, with_image: bool) -> dict[str, Any]:
        """`GET /sdapi/v1/progress`: the running task (`current_task`), its progress and,
        if asked, its live preview (`current_image`, base64)."""
        params = {"skip_current_image": "false" if with_image else "true"}
        answer = self.request("GET", "progress", params=params)
        if not isinstance(answer, dict):
            raise TransientProviderError(f"{API_ERROR}: the answer to progress is not an object")
        return answer

    def interrupt_if_running(self, task_id: str) -> bool:
        """Interrupt the server's run only if it is ours (`task_id`, the id we forced);
        whether it was. A1111 stops whatever runs on `/interrupt`, so it is asked first."""
        if self.progress(with_image=False).get("current_task") != task_id:
            return False
        self.request("POST", "interrupt")
        return True

    # -- plumbing -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        """One API call; its JSON answer, or a provider error."""
        s = self.settings
        what = f"{method} /sdapi/v1/{endpoint}"
        try:
            response = self.session.request(
                method,
                f"{self.backend.url}/sdapi/v1/{endpoint}",
                json=body,
                params=params,
                timeout=(s.connect_timeout, read_timeout or s.quick_read),
                allow_redirects=False,
            )
            with response:
                if response.status_code >= 300:
                    raise self._status_error(response, what)
                try:
                    return response.json()
                except ValueError:
                    raise TransientProviderError(
                        f"{API_ERROR}: the answer of {self.backend.name} to {what} is not JSON"
                    ) from None
        except requests.RequestException as exc:
            raise self._network_error(exc, what, read_timeout or s.quick_read) from None

    def _network_error(
        self, exc: requests.RequestException, what: str, read_timeout: float
    ) -> BackendDown:
        name = self.backend.name
        if isinstance(exc, requests.ConnectTimeout):
            reason = f"timed out connecting to {name}"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer from {name} within {read_timeout:g} s"
        elif isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
            reason = f"the connection to {name} failed"
        else:  # the exception's text could quote the URL or a header; its name cannot
            reason = f"{type(exc).__name__} talking to {name}"
        return BackendDown(self.backend, self._redact(f"{API_ERROR}: {reason} ({what})"))

    def _status_error(self, response: requests.Response, what: str) -> ProviderError:
        """An error answer as a provider error, with what the server said about it."""
        code = response.status_code
        text = self._redact(_said(response))[:MAX_DETAIL]
        message = f"{API_ERROR}: {self.backend.name} answered {what} with HTTP {code}"
        message += f": {text}" if text else ""
        details: dict[str, Any] = {"status_code": code, "server": self.backend.name}
        if code in DOWN_STATUSES:
            return BackendDown(self.backend, message, details=details)
        if code == 429 or code >= 500 or code == 408:
            return TransientProviderError(message, details=details)
        if code == 401:
            message += " (check the user:password@ of DARKROOM_A1111_URLS against --api-auth)"
        return PermanentProviderError(message, details=details)

    def _redact(self, text: str) -> str:
        if self.backend.auth and self.backend.auth[1]:
            text = text.replace(self.backend.auth[1], "[redacted]")
        return " ".join(text.split())


def _said(response: requests.Response) -> str:
    """What an error answer says: A1111's {error, detail, errors} or FastAPI's {detail}."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail")
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg', '')}"
            for item in detail[:5]
            if isinstance(item, dict)
        )
    parts = [str(p) for p in (detail, body.get("errors")) if p]
    if len(parts) == 2 and parts[0] in parts[1]:
        parts = parts[1:]  # "Not Found" + "404: Not Found"
    return " ".join(parts) or str(body.get("error") or "")


def _dicts(answer: Any, endpoint: str) -> list[dict[str, Any]]:
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise TransientProviderError(f"{API_ERROR}: the answer to {endpoint} is not a list")
    return answer
