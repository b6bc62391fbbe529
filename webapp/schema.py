"""Create or upgrade the database schema at start-up, one process at a time."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from webapp.config import PROJECT_ROOT
from webapp.extensions import db

MIGRATIONS = PROJECT_ROOT / "migrations"


@contextlib.contextmanager
def _schema_lock(app: Flask) -> Iterator[None]:
    """Serialise upgrades: a file lock on one box, an advisory lock on PostgreSQL."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(7163420001)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(7163420001)"))
                conn.commit()
        return
    lock_path = Path(app.instance_path) / ".schema.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade_schema(app: Flask) -> None:
    """Bring the schema to the newest migration (gunicorn workers may race here)."""
    with app.app_context(), _schema_lock(app):
        upgrade(directory=str(MIGRATIONS))
