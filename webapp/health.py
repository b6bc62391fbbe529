"""Health checks of the database, the queue, media storage and the workers."""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, text

from webapp.extensions import db, huey
from webapp.media import storage_problem
from webapp.models import WorkerBeat, now_utc
from webapp.providers import backends

log = logging.getLogger(__name__)

WORKER_SEEN_SECONDS = 60


def database_ok() -> bool:
    """The database answers and accepts writes (a write lock taken and released at once)."""
    try:
        if db.engine.dialect.name == "sqlite":
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                # A short wait: a probe must answer quickly, not queue behind a long writer.
                cursor.execute("PRAGMA busy_timeout=2000")
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    cursor.execute("ROLLBACK")
                finally:
                    cursor.execute("PRAGMA busy_timeout=15000")
            finally:
                raw.close()
        else:
            read_only = db.session.execute(text("SHOW transaction_read_only")).scalar()
            db.session.rollback()
            return read_only == "off"
        return True
    except Exception:
        log.warning("database check failed", exc_info=True)
        db.session.rollback()
        return False


def queue_ok() -> bool:
    """The queue's storage answers and accepts writes, within a probe's patience."""
    try:
        filename = getattr(huey.storage, "filename", None)
        if filename:
            # Its own short-lived connection: huey's waits up to 10 s on a busy file.
            conn = sqlite3.connect(filename, timeout=2, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("SELECT count(*) FROM task")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        else:
            huey.storage.conn.ping()
        return True
    except Exception:
        log.warning("queue check failed", exc_info=True)
        return False


def storage_ok() -> bool:
    """Media can be stored: the folder takes a file, with free space above the floor and
    the total under its cap (`webapp.media.storage_problem`)."""
    problem = storage_problem()
    if problem:
        log.warning("storage check failed: %s", problem)
    return problem is None


def worker_seen() -> bool:
    """A queue consumer reported in recently."""
    try:
        since = now_utc() - timedelta(seconds=WORKER_SEEN_SECONDS)
        return (
            db.session.scalar(select(WorkerBeat.id).where(WorkerBeat.last_seen >= since).limit(1))
            is not None
        )
    except Exception:
        db.session.rollback()
        return False


def check_services() -> dict[str, bool]:
    """Every dependency's state."""
    return {
        "database": database_ok(),
        "queue": queue_ok(),
        "storage": storage_ok(),
        "worker": worker_seen(),
    }


def overall(services: dict[str, bool]) -> str:
    """healthy when all is well, degraded without a worker, unhealthy when a store is down."""
    if not all(services[k] for k in ("database", "queue", "storage")):
        return "unhealthy"
    return "healthy" if services["worker"] else "degraded"


def report() -> dict[str, Any]:
    """The body of `GET /health`."""
    from webapp import __version__

    services = check_services()
    return {
        "status": overall(services),
        "version": __version__,
        "environment": current_app.config["ENVIRONMENT"],
        "services": services,
        "backends": backends.health(),
        "timestamp": now_utc(),
    }
