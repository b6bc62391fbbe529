"""Configuration defaults, overridden by the environment and then by tests."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def instance_path() -> Path:
    """Return the instance folder: `DARKROOM_INSTANCE_PATH` or `./instance` of the project."""
    return Path(os.environ.get("DARKROOM_INSTANCE_PATH") or PROJECT_ROOT / "instance").resolve()


class Defaults:
    """Built-in defaults; every key can be set as `DARKROOM_<KEY>` in the environment."""

    SECRET_KEY = "dev-only-change-me"
    AUTH = "off"  # "on": accounts, API keys, ownership, signed media URLs (README)
    DAILY_JOB_QUOTA = 0  # jobs per user per UTC day with accounts on; 0: unlimited
    SIGNED_URL_SECONDS = 86400  # how long a signed media URL works (accounts on)
    ENVIRONMENT = "production"
    PUBLIC_URL = ""  # empty: http://localhost:$PORT
    DEFAULT_MODEL = ""  # empty: flux-schnell with a Replicate token, else demo
    MAX_RETRIES = 3
    RETENTION_DAYS = 30
    ORPHAN_FILE_GRACE_SECONDS = 3600  # files no media row names are removed once this old
    LEASE_SECONDS = 60
    STALE_QUEUE_SECONDS = 30
    WORKER_CONCURRENCY = 2
    ESTIMATE_CACHE_SECONDS = 10.0  # how long a process reuses a model's recent mean run time
    DOORBELL_WAIT_SECONDS = 1.0  # an idle worker checks the queue at least this often
    DEMO_STEP_SECONDS = 0.25
    # Self-hosted providers: comma-separated base URLs of their servers (docs/a1111.md,
    # docs/comfyui.md); a down server is tried again after this back-off, doubled per
    # failure in a row up to ten times (the worker also probes every server each minute).
    A1111_URLS = ""
    COMFYUI_URLS = ""
    BACKEND_RETRY_SECONDS = 5.0
    A1111_CONNECT_TIMEOUT = 5.0
    A1111_READ_TIMEOUT = 600.0  # txt2img answers only when the picture is done
    A1111_POLL_SECONDS = 1.0  # progress and preview reads while a picture is made
    COMFYUI_CONNECT_TIMEOUT = 5.0
    COMFYUI_READ_TIMEOUT = 60.0
    COMFYUI_DEADLINE_SECONDS = 900.0  # a prompt still running after this is interrupted
    # OpenAI (OPENAI_API_KEY enables it; OPENAI_BASE_URL for compatible servers; docs/openai.md).
    OPENAI_CONNECT_TIMEOUT = 5.0
    OPENAI_READ_TIMEOUT = 300.0  # an image call answers only when the pictures are done
    # The OpenAI-compatible face (/v1): how long a request waits for its job, and where
    # its jobs' webhooks go (none when empty).
    OPENAI_WAIT_SECONDS = 300.0
    OPENAI_WEBHOOK_URL = ""
    # Replicate (REPLICATE_API_TOKEN enables it; see docs/replicate.md).
    REPLICATE_POLL_SECONDS = 1.0  # between status checks of a running prediction
    REPLICATE_WAIT_SECONDS = 0  # >0: create with `Prefer: wait=N` (see docs for the trade-off)
    REPLICATE_CONNECT_TIMEOUT = 5.0
    REPLICATE_READ_TIMEOUT = 30.0
    REPLICATE_DEADLINE_SECONDS = 900.0  # a prediction still running after this is cancelled
    REPLICATE_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024  # per output file
    REPLICATE_MAX_PIXELS = 50_000_000  # per output image
    # An input picture up to this size is sent inline as a data URI, a larger one through
    # Replicate's files API (one more request, but no bloated prediction body).
    REPLICATE_DATA_URI_MAX_BYTES = 256 * 1024
    RETRY_BASE_SECONDS = 2.0
    RETRY_MAX_SECONDS = 300.0
    AUTO_MIGRATE = True
    RATE_LIMIT_CREATE = "10/minute"  # job creation per client IP (API and browser together)
    RATE_LIMIT_STATUS = "60/minute"  # API status reads per client IP
    RATE_LIMIT_POLL = "600/minute"  # the browser's live updates and job pages
    RATE_LIMIT_SEARCH = "120/minute"  # gallery pages: search, filter, scrolling
    RATE_LIMIT_UPLOAD = "30/minute"  # pictures sent to POST /uploads per client IP
    TRUSTED_PROXIES = 0  # reverse proxies in front whose X-Forwarded-For is believed
    WEBHOOK_SECRET = ""  # empty: generated once into the instance folder
    WEBHOOK_ALLOWED_NETWORKS = ""  # CIDRs that webhooks may reach although not public
    WEBHOOK_RETRY_DELAYS = "10,60,300,1800,7200,21600"  # seconds before each retry
    WEBHOOK_CA_BUNDLE = ""  # a PEM file of private CAs trusted for HTTPS webhooks, too
    WEBHOOK_CONNECT_TIMEOUT = 5.0
    WEBHOOK_TIMEOUT = 15.0
    WEBHOOK_CONCURRENCY = 4  # the consumer's delivery threads, apart from the job threads
    WEBHOOK_PER_HOST = 2  # of those, at most this many deliver to one host and port at once
    MAX_CONTENT_LENGTH = 1024 * 1024
    MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an uploaded picture (that endpoint's body may be this)
    MAX_UPLOAD_PIXELS = 40_000_000  # width x height of an uploaded picture, read before decoding
    MIN_FREE_DISK_MB = 500  # below this much free space on the media disk, new jobs get 503
    MAX_STORAGE_GB = 0.0  # >0: new jobs get 503 once the media pictures total this much
    # flask-smorest: the OpenAPI document and the docs page live under /api/v1.
    API_TITLE = "Darkroom"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.1.0"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/api/v1/docs/assets/"
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {}


def from_environment() -> dict[str, Any]:
    """Read the ecosystem-named settings (`DATABASE_URL`, `PORT`, ...) from the environment."""
    env = os.environ
    config: dict[str, Any] = {}
    if env.get("SECRET_KEY"):
        config["SECRET_KEY"] = env["SECRET_KEY"]
    if env.get("DATABASE_URL"):
        url = env["DATABASE_URL"]
        # Heroku-style URLs say postgres://, which SQLAlchemy 2 no longer accepts.
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        config["SQLALCHEMY_DATABASE_URI"] = url
    for key in (
        "REDIS_URL", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL", "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):  # fmt: skip
        if env.get(key):
            config[key] = env[key]
    config["PORT"] = int(env.get("PORT") or 8000)
    return config


POSITIVE = frozenset(
    {
        "LEASE_SECONDS", "WORKER_CONCURRENCY", "DOORBELL_WAIT_SECONDS", "REPLICATE_POLL_SECONDS",
        "REPLICATE_CONNECT_TIMEOUT", "REPLICATE_READ_TIMEOUT", "REPLICATE_DEADLINE_SECONDS",
        "REPLICATE_MAX_DOWNLOAD_BYTES", "REPLICATE_MAX_PIXELS", "WEBHOOK_CONNECT_TIMEOUT",
        "WEBHOOK_TIMEOUT", "WEBHOOK_CONCURRENCY", "WEBHOOK_PER_HOST", "MAX_CONTENT_LENGTH",
        "SIGNED_URL_SECONDS", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "BACKEND_RETRY_SECONDS",
        "A1111_CONNECT_TIMEOUT", "A1111_READ_TIMEOUT", "A1111_POLL_SECONDS",
        "COMFYUI_CONNECT_TIMEOUT", "COMFYUI_READ_TIMEOUT", "COMFYUI_DEADLINE_SECONDS",
        "OPENAI_CONNECT_TIMEOUT", "OPENAI_READ_TIMEOUT", "OPENAI_WAIT_SECONDS",
    }
)  # fmt: skip
"""Numeric settings that must be above zero; the other numeric ones may also be zero."""


def check_settings(config: dict[str, Any]) -> None:
    """Settle every numeric and yes/no setting to its kind and check the rate limits, retry
    delays and CA bundle, or stop the start naming each bad setting.

    The environment's values arrive parsed as JSON when they can be (`3600`, `false`); a
    value that is not (`an hour`, `no`) would otherwise stay a string and fail much later,
    inside whichever task first reads it.
    """
    problems: list[str] = []
    for key, default in vars(Defaults).items():
        if not key.isupper() or key not in config:
            continue
        value = config[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                problems.append(f"DARKROOM_{key}: expected true or false, got {value!r}")
            continue
        if not isinstance(default, int | float):
            continue
        number = _number(value)
        whole = isinstance(default, int)
        least = "above 0" if key in POSITIVE else "0 or more"
        kind = "a whole number" if whole else "a number"
        if (
            number is None
            or (whole and not number.is_integer())
            or number < 0
            or (number == 0 and key in POSITIVE)
        ):
            problems.append(f"DARKROOM_{key}: expected {kind} {least}, got {value!r}")
            continue
        config[key] = int(number) if whole else number
    limits = ("CREATE", "STATUS", "POLL", "SEARCH", "UPLOAD")
    for key in (f"RATE_LIMIT_{name}" for name in limits):
        if key in config and not _rate_limit(config[key]):
            problems.append(
                f"DARKROOM_{key}: expected a limit such as 10/minute, got {config[key]!r}"
            )
    if "AUTH" in config:
        auth = _switch(config["AUTH"])
        if auth is None:
            problems.append(f"DARKROOM_AUTH: expected on or off, got {config['AUTH']!r}")
        else:
            config["AUTH"] = auth
    delays = config.get("WEBHOOK_RETRY_DELAYS")
    if delays is not None and not _delays(delays):
        problems.append(
            "DARKROOM_WEBHOOK_RETRY_DELAYS: expected seconds before each retry, such as "
            f"10,60,300, got {delays!r}"
        )
    if config.get("WEBHOOK_CA_BUNDLE"):
        from webapp.netguard import tls_context

        # A bundle that cannot be read stops the start, not every delivery later on.
        try:
            tls_context(str(config["WEBHOOK_CA_BUNDLE"]))
        except ValueError as exc:
            problems.append(f"DARKROOM_WEBHOOK_CA_BUNDLE: {exc}")
    for key in ("A1111_URLS", "COMFYUI_URLS"):
        try:
            server_urls(str(config.get(key) or ""))
        except ValueError as exc:
            problems.append(f"DARKROOM_{key}: expected comma-separated http(s) URLs, {exc}")
    if problems:
        raise RuntimeError("invalid settings: " + "; ".join(problems))


def server_urls(value: str) -> list[tuple[str, tuple[str, str] | None]]:
    """The servers a comma-separated setting lists: (URL without credentials or trailing
    slash, (user, password) or None); ValueError names one that is not an http(s) URL."""
    servers = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        parts = urlsplit(item)
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ValueError(f"not an http(s) URL: {item!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {item!r}")
        auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        netloc = parts.netloc.rpartition("@")[2]  # host and port, brackets kept
        servers.append((urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), auth))
    return servers


def _switch(value: Any) -> str | None:
    """ "on" or "off" from on/off, true/false, yes/no, 1/0 (any case); None for the rest."""
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return "on"
    if text in ("off", "false", "no", "0", ""):
        return "off"
    return None


def accounts_from_environment() -> bool:
    """Whether `DARKROOM_AUTH` in the environment turns accounts on (before any app exists)."""
    return _switch(os.environ.get("DARKROOM_AUTH", "off")) == "on"


def auth_enabled(config: Any) -> bool:
    """Whether accounts are on (`DARKROOM_AUTH=on`)."""
    return config.get("AUTH") == "on"


def _rate_limit(value: Any) -> bool:
    from limits import parse  # as webapp.ratelimit reads it

    try:
        return bool(parse(str(value)))
    except ValueError:
        return False


def _delays(value: Any) -> bool:
    """A number, or numbers given as a list or comma-separated, each 0 or more (or none)."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple):
        parts = [parts]
    numbers = [_number(p) for p in parts if not isinstance(p, str) or p.strip()]
    return all(n is not None and n >= 0 for n in numbers)  # none at all: no retries


def _number(value: Any) -> float | None:
    """A finite number from a number or its text; None for anything else (booleans too)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
