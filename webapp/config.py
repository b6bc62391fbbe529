"""Configuration defaults, overridden by the environment and then by tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def instance_path() -> Path:
    """Return the instance folder: `DARKROOM_INSTANCE_PATH` or `./instance` of the project."""
    return Path(os.environ.get("DARKROOM_INSTANCE_PATH") or PROJECT_ROOT / "instance").resolve()


class Defaults:
    """Built-in defaults; every key can be set as `DARKROOM_<KEY>` in the environment."""

    SECRET_KEY = "dev-only-change-me"
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
    # Replicate (REPLICATE_API_TOKEN enables it; see docs/replicate.md).
    REPLICATE_POLL_SECONDS = 1.0  # between status checks of a running prediction
    REPLICATE_WAIT_SECONDS = 0  # >0: create with `Prefer: wait=N` (see docs for the trade-off)
    REPLICATE_CONNECT_TIMEOUT = 5.0
    REPLICATE_READ_TIMEOUT = 30.0
    REPLICATE_DEADLINE_SECONDS = 900.0  # a prediction still running after this is cancelled
    REPLICATE_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024  # per output file
    REPLICATE_MAX_PIXELS = 50_000_000  # per output image
    RETRY_BASE_SECONDS = 2.0
    RETRY_MAX_SECONDS = 300.0
    AUTO_MIGRATE = True
    RATE_LIMIT_CREATE = "10/minute"  # job creation per client IP (API and browser together)
    RATE_LIMIT_STATUS = "60/minute"  # API status reads per client IP
    RATE_LIMIT_POLL = "600/minute"  # the browser's own live-update polling
    TRUSTED_PROXIES = 0  # reverse proxies in front whose X-Forwarded-For is believed
    WEBHOOK_SECRET = ""  # empty: generated once into the instance folder
    WEBHOOK_ALLOWED_NETWORKS = ""  # CIDRs that webhooks may reach although not public
    WEBHOOK_RETRY_DELAYS = "10,60,300,1800,7200,21600"  # seconds before each retry
    WEBHOOK_CA_BUNDLE = ""  # a PEM file of private CAs trusted for HTTPS webhooks, too
    WEBHOOK_CONNECT_TIMEOUT = 5.0
    WEBHOOK_TIMEOUT = 15.0
    MAX_CONTENT_LENGTH = 1024 * 1024
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
    for key in ("REDIS_URL", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"):
        if env.get(key):
            config[key] = env[key]
    config["PORT"] = int(env.get("PORT") or 8000)
    return config
