"""OpenAI's Images API over HTTP: generations, edits, and the download of `url` answers.

Every failure becomes a provider error whose message starts "OpenAI API error:" and never
holds the key, nor the masked key OpenAI quotes back in a 401. Network trouble, timeouts,
408/409, 429 and 5xx are transient (with `retry-after-ms` or `Retry-After`); a 429 for an
exhausted quota, content-policy refusals and every other 4xx are permanent, with OpenAI's
own message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from webapp.providers.base import PermanentProviderError, ProviderError, TransientProviderError
from webapp.providers.pictures import MAX_RETRY_AFTER, retry_after_header

API_ERROR = "OpenAI API error"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_DETAIL = 500
MAX_ERROR_BYTES = 64 * 1024  # an error answer is a small JSON object
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # per picture, decoded or downloaded (as Replicate's cap)
MAX_PIXELS = 50_000_000  # per picture; the largest OpenAI renders is 1792x1024
TRANSIENT_STATUSES = (408, 409, 429)  # and every 5xx: what OpenAI's own clients retry
PERMANENT_CODES = ("insufficient_quota", "billing_hard_limit_reached")
# OpenAI's 401 quotes the key it got, masked ("sk-proj-abc*****wxyz"): a piece of a key is
# still not for job errors, so anything shaped like one is blanked.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9*_\-]+")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """How to reach OpenAI (or a compatible server), read from the app's configuration."""

    key: str
    base_url: str
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Settings from `OPENAI_*` keys; a missing or malformed key is a permanent error."""
        key = str(config.get("OPENAI_API_KEY") or "").strip()
        # A key that cannot be a header value would make requests echo it in its error.
        if not key or not re.fullmatch(r"[\x21-\x7e]+", key):
            raise PermanentProviderError(f"{API_ERROR}: OPENAI_API_KEY is missing or malformed")
        return cls(
            key=key,
            base_url=str(config.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            connect_timeout=float(config["OPENAI_CONNECT_TIMEOUT"]),
            read_timeout=float(config["OPENAI_READ_TIMEOUT"]),
        )


@dataclass(frozen=True)
class Answer:
    """A successful answer: its JSON body, and OpenAI's id of the request (for support)."""

    body: dict[str, Any]
    request_id: str | None


class OpenAIClient:
    """One attempt's worth of API calls; use it as a context manager."""

    def __init__(self, settings: Settings) -> None:
        from webapp import __version__

        self.settings = settings
        self.session = requests.Session()
        # The key goes on API requests only: `url` answers live on a CDN that must not get it.
        self.session.headers["User-Agent"] = f"Darkroom/{__version__}"

    def __enter__(self) -> OpenAIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def generate(self, fields: dict[str, Any]) -> Answer:
        """`POST /images/generations` with a JSON body."""
        return self._post("images/generations", fields, json=fields)

    def edit(self, fields: dict[str, Any], files: dict[str, tuple[str, bytes, str]]) -> Answer:
        """`POST /images/edits` as multipart: the fields as text, the pictures as files."""
        data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
        return self._post("images/edits", fields, data=data, files=files)

    def _post(self, path: str, fields: dict[str, Any], **body: Any) -> Answer:
        s = self.settings
        what = f"POST /{path}"
        # Base64 grows a picture by a third; n pictures and a little JSON around them.
        cap = int(fields.get("n") or 1) * MAX_IMAGE_BYTES * 4 // 3 + _CHUNK
        try:
            response = self.session.post(
                f"{s.base_url}/{path}",
                headers={"Authorization": f"Bearer {s.key}"},
                timeout=(s.connect_timeout, s.read_timeout),
                allow_redirects=False,
                stream=True,
                **body,
            )
            with response:
                if response.status_code >= 300:
                    raise self._status_error(response, _head(response, MAX_ERROR_BYTES))
                raw = read_capped(response, cap)
        except requests.RequestException as exc:
            raise self._network_error(exc, what) from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TransientProviderError(f"{API_ERROR}: the answer to {what} was not JSON")
        return Answer(data, response.headers.get("x-request-id"))

    def download(self, url: str) -> bytes:
        """A `url` answer's picture (without the key, no redirects), capped in size."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise PermanentProviderError(f"{API_ERROR}: an output is not an http(s) URL")
        s = self.settings
        host = urlsplit(url).netloc
        try:
            response = self.session.get(
                url,
                timeout=(s.connect_timeout, s.read_timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                code = response.status_code
                if code >= 500 or code in TRANSIENT_STATUSES:
                    raise TransientProviderError(
                        f"{API_ERROR}: an output download failed (HTTP {code})",
                        details={"status_code": code},
                    )
                if code != 200:  # expired (403/404), or a redirect: nowhere else is trusted
                    raise PermanentProviderError(
                        f"{API_ERROR}: an output download was refused (HTTP {code})",
                        details={"status_code": code},
                    )
                return read_capped(response, MAX_IMAGE_BYTES)
        except requests.RequestException as exc:
            raise self._network_error(exc, "an output download", host) from None

    # -- errors ---------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """The text without the key, or anything shaped like a key."""
        return _KEY_LIKE.sub("[redacted]", text.replace(self.settings.key, "[redacted]"))

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
        return TransientProviderError(self.redact(f"{API_ERROR}: {message}"))

    def _status_error(self, response: requests.Response, raw: bytes) -> ProviderError:
        """Turn an error answer (`{"error": {message, type, param, code}}`) into an error."""
        status = response.status_code
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        text = str(error.get("message") or response.reason or f"HTTP {status}")
        text = self.redact(" ".join(text.split()))[:MAX_DETAIL]
        details: dict[str, Any] = {"status_code": status}
        for name in ("type", "code", "param"):
            if error.get(name) not in (None, ""):  # compatible servers send numbers, too
                details[name] = self.redact(str(error[name]))[:100]
        if response.headers.get("x-request-id"):
            details["request_id"] = response.headers["x-request-id"][:100]
        message = f"{API_ERROR}: {text}"
        quota = details.get("code") in PERMANENT_CODES or details.get("type") in PERMANENT_CODES
        if (status >= 500 or status in TRANSIENT_STATUSES) and not quota:
            return TransientProviderError(
                message if status == 429 else f"{message} (HTTP {status})",
                retry_after=retry_after(response.headers),
                details=details,
            )
        return PermanentProviderError(message, details=details)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: OpenAI's `retry-after-ms` when sent, else `Retry-After`."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, min(MAX_RETRY_AFTER, seconds))
    return retry_after_header(headers.get("Retry-After"))


def read_capped(response: requests.Response, cap: int) -> bytes:
    """A streamed answer's body, refused once it is over `cap` bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(cap)
    data = bytearray()
    for chunk in response.iter_content(_CHUNK):
        data += chunk
        if len(data) > cap:
            raise _too_large(cap)
    return bytes(data)


def _head(response: requests.Response, limit: int) -> bytes:
    """The first `limit` bytes of an answer (an error's body is only read for its message)."""
    data = bytearray()
    for chunk in response.iter_content(_CHUNK):
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def _too_large(cap: int) -> PermanentProviderError:
    return PermanentProviderError(f"{API_ERROR}: an answer is larger than {cap} bytes")
