"""Rate limits that hold across every web process: counters in shared storage.

Counters kept in each process's memory would let N gunicorn workers grant N times the
limit, and one threaded process instead costs about half the throughput on two cores. So
the counters live where all processes see them: a small SQLite file in the instance folder
on one box (one atomic UPSERT per limited request, in its own file so it never waits on the
app database), or Redis when `REDIS_URL` is set. Flask-Limiter does the rest (limits per
endpoint, a bucket shared by the API and the browser form, the `X-RateLimit-*` headers).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter
from limits.storage import Storage
from werkzeug.middleware.proxy_fix import ProxyFix


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


def register_rate_limits(app: Flask) -> None:
    """Bind the limiter to shared storage and put the limits on their endpoints."""
    config = app.config
    proxies = int(config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]
    if config.get("REDIS_URL"):
        config.setdefault("RATELIMIT_STORAGE_URI", config["REDIS_URL"])
    else:
        path = Path(app.instance_path) / "ratelimit.db"
        config.setdefault("RATELIMIT_STORAGE_URI", f"darkroom+sqlite://{path}")
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    config.setdefault("RATELIMIT_KEY_PREFIX", "darkroom")
    # A broken counter store must not take the service down with it.
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    # One limiter per app: Flask-Limiter keeps the limits it decorates on the instance.
    limiter = Limiter(key_func=client_ip, app=app)
    for endpoint, (key, scope) in LIMITED.items():
        view = app.view_functions.get(endpoint)
        if view is not None:
            limit = str(config[key])
            app.view_functions[endpoint] = limiter.shared_limit(limit, scope=scope)(view)
