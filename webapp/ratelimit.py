"""Rate limits that hold across every web process: counters in shared storage.

Counters kept in each process's memory would let N gunicorn workers grant N times the
limit, and one threaded process instead costs about half the throughput on two cores. So
the counters live where all processes see them: a small SQLite file in the instance folder
on one box (one atomic UPSERT per limited request, in its own file so it never waits on the
app database), or Redis when `REDIS_URL` is set.

The counting is the `limits` package's (its storages and its fixed window); the Flask side is
the few lines below: one counter hit before a limited endpoint runs, the `X-RateLimit-*`
headers on its answer, 429 with `Retry-After` over the limit. Flask-Limiter did this with
enough per-request machinery to cost a sixth of a status read, the endpoint that clients
poll in a loop (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger(__name__)


class SQLiteStorage(Storage):
    """A `limits` storage in a SQLite file: fixed-window counters, one statement per hit."""

    STORAGE_SCHEME = ["darkroom+sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = uri.split("://", 1)[1]
        self._local = threading.local()

    @property
    def base_exceptions(self) -> type[Exception]:
        """Errors of this storage that the limiter may swallow."""
        return sqlite3.Error

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread and process (a forked child opens its own)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=15, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters "
                "(key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL)"
            )
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count a hit; a window that has ended starts again from this hit."""
        now = time.time()
        count, expires_at = (
            self._conn()
            .execute(
                "INSERT INTO counters (key, count, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "count = CASE WHEN expires_at <= ? THEN excluded.count "
                "ELSE count + excluded.count END, "
                "expires_at = CASE WHEN expires_at <= ? THEN excluded.expires_at "
                "ELSE expires_at END "
                "RETURNING count, expires_at",
                (key, amount, now + expiry, now, now),
            )
            .fetchone()
        )
        # The limiter asks for this key's count and reset right after (for its headers):
        # answer those from here instead of two more queries.
        self._local.last = (key, int(count), float(expires_at))
        if count == amount and hash(key) % 64 == 0:
            self._sweep(now)
        return int(count)

    def _recent(self, key: str) -> tuple[int, float] | None:
        last = getattr(self._local, "last", None)
        if last is not None and last[0] == key and last[2] > time.time():
            return last[1], last[2]
        return None

    def _sweep(self, now: float) -> None:
        """Now and then, drop windows that ended long ago (keeps the file small)."""
        self._conn().execute("DELETE FROM counters WHERE expires_at < ?", (now - 3600,))

    def get(self, key: str) -> int:
        """Hits in the current window."""
        recent = self._recent(key)
        if recent is not None:
            return recent[0]
        row = (
            self._conn()
            .execute(
                "SELECT count FROM counters WHERE key = ? AND expires_at > ?", (key, time.time())
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        """When the current window ends (now, if there is none)."""
        recent = self._recent(key)
        if recent is not None:
            return recent[1]
        row = (
            self._conn().execute("SELECT expires_at FROM counters WHERE key = ?", (key,)).fetchone()
        )
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        """Whether the file answers."""
        try:
            self._conn().execute("SELECT 1")
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        """Forget every counter."""
        self._local.last = None
        return self._conn().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        """Forget one counter."""
        self._local.last = None
        self._conn().execute("DELETE FROM counters WHERE key = ?", (key,))


def client_ip() -> str:
    """The client's address (`X-Forwarded-For` counts only through configured proxies)."""
    return request.remote_addr or "unknown"


# Endpoint → (config key, scope). Creating a job from the API, the browser form or "Vary
# seed" draws on one shared bucket per client.
LIMITED = {
    "jobs.JobGenerate": ("RATE_LIMIT_CREATE", "create"),
    "pages.create": ("RATE_LIMIT_CREATE", "create"),
    "pages.vary": ("RATE_LIMIT_CREATE", "create"),
    "jobs.JobStatusView": ("RATE_LIMIT_STATUS", "status"),
    "pages.poll": ("RATE_LIMIT_POLL", "poll"),
}


_STATE_KEY = "darkroom.rate_limit"


class RateLimited(TooManyRequests):
    """Over a limit: 429 with `Retry-After` (the error handlers give it the usual shape)."""


class RateLimits:
    """Fixed-window limits per client on the endpoints of `LIMITED`, counted in `storage`."""

    def __init__(self, storage: Storage, limits: dict[str, tuple[RateLimitItem, str]], prefix: str):
        self.storage = storage
        self.limits = limits
        self.prefix = prefix

    def check(self) -> None:
        """Count this request against its endpoint's limit; raise `RateLimited` past it."""
        rule = self.limits.get(request.endpoint or "")
        if rule is None or request.method == "OPTIONS":
            return
        item, scope = rule
        key = item.key_for(self.prefix, scope, client_ip())
        try:
            count = self.storage.incr(key, item.get_expiry())
            reset = self.storage.get_expiry(key)
        except self.storage.base_exceptions:
            # A broken counter store must not take the service down with it.
            log.warning("rate limit storage failed; request let through", exc_info=True)
            return
        # On the request, not on `g`, which requests share when an app context is already
        # pushed (tests, CLI).
        request.environ[_STATE_KEY] = (item, count, reset)
        if count > item.amount:
            raise RateLimited(description=f"Rate limit exceeded: {item}")

    @staticmethod
    def headers(response: Response) -> Response:
        """The `X-RateLimit-*` headers of a limited endpoint's answer (429 included)."""
        state = request.environ.get(_STATE_KEY)
        if state is not None:
            item, count, reset = state
            response.headers["X-RateLimit-Limit"] = str(item.amount)
            response.headers["X-RateLimit-Remaining"] = str(max(0, item.amount - count))
            response.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
            if count > item.amount:
                response.headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
        return response


def register_rate_limits(app: Flask) -> None:
    """Bind the limits of `LIMITED` to shared storage and check them before each request."""
    config = app.config
    proxies = int(config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]
    uri = config.get("RATELIMIT_STORAGE_URI") or config.get("REDIS_URL")
    if not uri:
        uri = f"darkroom+sqlite://{Path(app.instance_path) / 'ratelimit.db'}"
    limits = {
        endpoint: (parse(str(config[key])), scope) for endpoint, (key, scope) in LIMITED.items()
    }
    rate_limits = RateLimits(
        storage_from_string(uri), limits, str(config.get("RATELIMIT_KEY_PREFIX") or "darkroom")
    )
    app.extensions["darkroom_rate_limits"] = rate_limits
    app.before_request(rate_limits.check)
    app.after_request(rate_limits.headers)
