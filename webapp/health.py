"""Health checks of the database, the queue, media storage and the workers."""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, text

from webapp.extensions import db, huey
from webapp.media import media_root
from webapp.models import WorkerBeat, now_utc

log = logging.getLogger(__name__)

WORKER_SEEN_SECONDS = 60


def database_ok() -> bool:
    """The database answers a query."""
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception:
        log.warning("database check failed", exc_info=True)
        db.session.rollback()
        return False


def queue_ok() -> bool:
    """The queue storage answers."""
    try:
        huey.pending_count()
        return True
    except Exception:
        log.warning("queue check failed", exc_info=True)
        return False


def storage_ok() -> bool:
    """The media folder exists and accepts a file."""
    root = media_root()
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".health-"):
            pass
        return os.access(root, os.W_OK)
    except OSError:
        log.warning("storage check failed", exc_info=True)
        return False


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
        "timestamp": now_utc(),
    }
