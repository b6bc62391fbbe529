"""Replicate's HTTP API: create, get and cancel predictions, send input files, and download
their outputs.

Every failure becomes a provider error whose message starts "Replicate API error:" and
never contains the token: network trouble, timeouts, 429 and 5xx are transient (429 with
its Retry-After); 401, 404, 422 and other refusals are permanent.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from webapp import netguard
from webapp.providers.base import PermanentProviderError, ProviderError, TransientProviderError
from webapp.providers.pictures import retry_after_header
from webapp.providers.replicate.models import Route

log = logging.getLogger(__name__)

API_ERROR = "Replicate API error"
DEFAULT_BASE_URL = "https://api.replicate.com"
MAX_DETAIL = 500
_CHUNK = 64 * 1024


class Gone(TransientProviderError):
    """The prediction, or its output files, no longer exist upstream (they expire)."""


@dataclass(frozen=True)
class Settings:
    """How to reach Replicate, read from the app's configuration."""

    token: str
    base_url: str
    connect_timeout: float
    read_timeout: float
    poll_seconds: float
    wait_seconds: int
    deadline_seconds: float
    max_download_bytes: int
    max_pixels: int
    data_uri_max_bytes: int = 256 * 1024

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Settings from `REPLICATE_*` keys; a missing or malformed token is a permanent error."""
        token = str(config.get("REPLICATE_API_TOKEN") or "").strip()
        # A token that cannot be a header value would make requests echo it in its error.
        if not token or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise PermanentProviderError(
                f"{API_ERROR}: REPLICATE_API_TOKEN is missing or malformed"
            )
        base_url = str(config.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        return cls(
            token=token,
            base_url=base_url.removesuffix("/v1"),
            connect_timeout=float(config["REPLICATE_CONNECT_TIMEOUT"]),
            read_timeout=float(config["REPLICATE_READ_TIMEOUT"]),
            poll_seconds=float(config["REPLICATE_POLL_SECONDS"]),
            wait_seconds=max(0, min(60, int(config["REPLICATE_WAIT_SECONDS"]))),
            deadline_seconds=float(config["REPLICATE_DEADLINE_SECONDS"]),
            max_download_bytes=int(config["REPLICATE_MAX_DOWNLOAD_BYTES"]),
            max_pixels=int(config["REPLICATE_MAX_PIXELS"]),
            data_uri_max_bytes=int(config["REPLICATE_DATA_URI_MAX_BYTES"]),
        )


class ReplicateClient:
    """One session's worth of API calls; use it as a context manager."""

    def __init__(self, settings: Settings) -> None:
        from webapp import __version__

        self.settings = settings
        self.session = requests.Session()
        # The token goes on API requests only, never into the session's headers: output
        # files live on another host, which must not receive it.
        self.session.headers["User-Agent"] = f"Darkroom/{__version__}"

    def __enter__(self) -> ReplicateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    # -- predictions ----------------------------------------------------------------------

    def create(self, route: Route, model_input: dict[str, Any]) -> dict[str, Any]:
        """Start a prediction: an official model by name, or a pinned version."""
        body: dict[str, Any] = {"input": model_input}
        if route.version:
            path, body["version"] = "predictions", route.version
        else:
            path = f"models/{route.model}/predictions"
        headers = {}
        wait = self.settings.wait_seconds
        if wait:
            headers["Prefer"] = f"wait={wait}"
        try:
            return self._api("POST", path, body=body, headers=headers, extra_read=wait)
        except Gone as exc:
            raise PermanentProviderError(
                f"{API_ERROR}: Model not found: {route.model}", details=exc.details
            ) from exc

    def get(self, prediction_id: str) -> dict[str, Any]:
        """A prediction's current state; `Gone` if Replicate no longer knows it."""
        return self._api("GET", f"predictions/{prediction_id}")

    def cancel(self, prediction_id: str) -> dict[str, Any]:
        """Ask Replicate to stop a prediction (a finished one is left as it is)."""
        return self._api("POST", f"predictions/{prediction_id}/cancel")

    def cancel_quietly(self, prediction_id: str) -> None:
        """Cancel, logging instead of raising: used while already giving up."""
        try:
            self.cancel(prediction_id)
            log.info("cancelled replicate prediction %s", prediction_id)
        except ProviderError as exc:
            log.warning("could not cancel replicate prediction %s: %s", prediction_id, exc)

    def _api(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        extra_read: float = 0,
    ) -> dict[str, Any]:
        s = self.settings
        try:
            response = self.session.request(
                method,
                f"{s.base_url}/v1/{path}",
                json=body,
                headers={"Authorization": f"Bearer {s.token}", **(headers or {})},
                timeout=(s.connect_timeout, s.read_timeout + extra_read),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._network_error(exc, f"{method} /v1/{path}") from None
        with response:
            if response.status_code >= 300:
                raise self._status_error(response)
            try:
                data = response.json()
            except ValueError:
                data = None
        if not isinstance(data, dict):
            raise TransientProviderError(f"{API_ERROR}: the answer to {method} was not JSON")
        return data

    # -- inputs ---------------------------------------------------------------------------

    def file_reference(self, data: bytes, mime_type: str, name: str) -> str:
        """What a model input is sent for a picture: a `data:` URI when it is small, else
        the URL of a file created through Replicate's files API."""
        if len(data) <= self.settings.data_uri_max_bytes:
            return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"
        created = self.upload_file(data, mime_type, name)
        url = (created.get("urls") or {}).get("get")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TransientProviderError(f"{API_ERROR}: the new file has no URL")
        return url

    def upload_file(self, data: bytes, mime_type: str, name: str) -> dict[str, Any]:
        """Create a file (`POST /v1/files`, multipart `content`); Replicate keeps it a day."""
        s = self.settings
        try:
            response = self.session.post(
                f"{s.base_url}/v1/files",
                files={"content": (name, data, mime_type)},
                headers={"Authorization": f"Bearer {s.token}"},
                timeout=(s.connect_timeout, s.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._network_error(exc, "POST /v1/files") from None
        with response:
            if response.status_code >= 300:
                raise self._status_error(response)
            try:
                created = response.json()
            except ValueError:
                created = None
        if not isinstance(created, dict):
            raise TransientProviderError(f"{API_ERROR}: the answer to POST /v1/files was not JSON")
        return created

    # -- outputs --------------------------------------------------------------------------

    def download(self, url: str) -> bytes:
        """An output file's bytes, capped in size; `Gone` once it has expired."""
        cap = self.settings.max_download_bytes
        if url.startswith("data:"):
            return _data_url(url, cap)
        if urlsplit(url).scheme not in ("http", "https"):
            raise PermanentProviderError(f"{API_ERROR}: an output is not an http(s) URL")
        s = self.settings
        origin = urlsplit(url).netloc
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                response = self.session.get(
                    url,
                    stream=True,
                    timeout=(s.connect_timeout, s.read_timeout),
                    allow_redirects=False,
                )
                if not response.is_redirect:
                    break
                response.close()
                url = _redirect_target(url, response.headers.get("Location", ""), origin)
            else:
                raise PermanentProviderError(f"{API_ERROR}: an output download redirects too often")
            with response:
                if response.status_code in (403, 404, 410):
                    raise Gone(
                        f"{API_ERROR}: an output file is gone (HTTP {response.status_code})",
                        details={"status_code": response.status_code},
                    )
                if response.status_code >= 300:
                    raise self._status_error(response)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise _too_large(cap)
                data = bytearray()
                for chunk in response.iter_content(_CHUNK):
                    data += chunk
                    if len(data) > cap:
                        raise _too_large(cap)
                return bytes(data)
        except requests.RequestException as exc:
            raise self._network_error(exc, "an output download", urlsplit(url).netloc) from None

    # -- errors ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self.settings.token, "[redacted]")

    def _network_error(
        self, exc: requests.RequestException, what: str, host: str | None = None
    ) -> ProviderError:
        host = host or urlsplit(self.settings.base_url).netloc
        if isinstance(exc, requests.ConnectTimeout):
            message = f"timed out connecting to {host} for {what}"
        elif isinstance(exc, requests.Timeout):
            message = f"no answer from {host} within {self.settings.read_timeout:g} s to {what}"
        elif isinstance(exc, requests.ConnectionError):
            message = f"connection to {host} failed during {what}"
        else:  # the exception's text could quote a header; its name cannot
            message = f"{type(exc).__name__} during {what}"
        return TransientProviderError(self._redact(f"{API_ERROR}: {message}"))

    def _status_error(self, response: requests.Response) -> ProviderError:
        """Turn an error answer (RFC 7807 problem details, as Replicate sends) into an error."""
        code = response.status_code
        try:
            problem = response.json()
        except ValueError:
            problem = None
        problem = problem if isinstance(problem, dict) else {}
        parts = [str(p) for p in (problem.get("title"), problem.get("detail")) if p]
        if len(parts) == 2 and parts[1].startswith(parts[0]):
            parts = parts[1:]  # "Request was throttled." + "Request was throttled. Expected..."
        text = " ".join((": ".join(parts) or response.reason or f"HTTP {code}").split())
        text = self._redact(text)[:MAX_DETAIL]
        message = f"{API_ERROR}: {text}"
        details: dict[str, Any] = {"status_code": code, "detail": text}
        if isinstance(problem.get("invalid_fields"), list):
            details["invalid_fields"] = json.loads(
                self._redact(json.dumps(problem["invalid_fields"][:20]))
            )
        if code == 429:
            retry_after = retry_after_header(response.headers.get("Retry-After"))
            return TransientProviderError(message, retry_after=retry_after, details=details)
        if code >= 500 or code == 408:
            return TransientProviderError(f"{message} (HTTP {code})", details=details)
        if code in (404, 410):
            return Gone(message, details=details)
        return PermanentProviderError(message, details=details)


def _too_large(cap: int) -> PermanentProviderError:
    return PermanentProviderError(f"{API_ERROR}: an output file is larger than {cap} bytes")


def _data_url(url: str, cap: int) -> bytes:
    """The bytes of a base64 `data:` URL (Replicate's sync mode may answer with these)."""
    header, _, payload = url.partition(",")
    if not header.endswith(";base64") or len(payload) > cap * 4 // 3 + 4:
        raise PermanentProviderError(f"{API_ERROR}: an output data URL is unusable or too large")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentProviderError(f"{API_ERROR}: an output data URL is not base64") from exc


MAX_REDIRECTS = 3


def _redirect_target(current: str, location: str, origin: str) -> str:
    """Where an output download's redirect leads, if it may be followed.

    Replicate's own answer names the first address; a redirect is the file server's, so
    one that leaves that server must lead to a public address (as a webhook must): a
    download is never a way into the operator's own network.
    """
    target = urljoin(current, location)
    if urlsplit(target).scheme not in ("http", "https"):
        raise PermanentProviderError(f"{API_ERROR}: an output download redirects to a non-http URL")
    if urlsplit(target).netloc != origin:
        try:
            netguard.resolve(target, [])
        except (netguard.UnsafeURL, netguard.UnresolvableURL) as exc:
            raise PermanentProviderError(
                f"{API_ERROR}: an output download redirects to a refused address ({exc})"
            ) from None
    return target
