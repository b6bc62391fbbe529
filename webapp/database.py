"""The database: engine settings, transactions, and the schema upgrade at start-up."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.sql.expression import Executable

from webapp.config import PROJECT_ROOT
from webapp.extensions import db

MIGRATIONS = PROJECT_ROOT / "migrations"


def rows_changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the session; how many rows it changed."""
    result = db.session.execute(statement)
    return cast(CursorResult[Any], result).rowcount


def sqlite_engine_options() -> dict[str, Any]:
    """Engine options for SQLite: a generous busy timeout and driver autocommit off our hands."""
    # isolation_level=None stops pysqlite from issuing its own BEGIN, so the "begin"
    # listener below decides between BEGIN and BEGIN IMMEDIATE.
    return {"connect_args": {"timeout": 15, "isolation_level": None, "check_same_thread": False}}


def register_database(app: Flask) -> None:
    """Tune SQLite connections (WAL, busy timeout, foreign keys) and dispose after fork."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    # A forked child (gunicorn worker, huey process worker) must not share the parent's
    # sockets or SQLite handles: drop the inherited pool without closing it for the parent.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))


def _tune_sqlite(engine: Engine) -> None:
    """Attach the pragma and BEGIN listeners to a SQLite engine."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # A write that starts DEFERRED and upgrades later can fail with "database is locked"
        # without waiting; IMMEDIATE takes the write lock up front and honours busy_timeout.
        options = conn.get_execution_options()
        if options.get(SINGLE_READ):
            return  # one SELECT is atomic on its own: see `single_read`
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")


SINGLE_READ = "darkroom_single_read"


@contextlib.contextmanager
def single_read() -> Iterator[Connection]:
    """A connection of its own for one SELECT, outside the session's transaction.

    On SQLite it skips BEGIN (and the ROLLBACK at the end): a lone statement already reads
    one consistent snapshot. For the hottest reads, such as the status that clients poll.
    """
    with db.engine.connect() as conn:
        yield conn.execution_options(**{SINGLE_READ: True})


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """Run the block in one write transaction (IMMEDIATE on SQLite), commit or roll back."""
    session = db.session()
    if session.in_transaction():
        # End the read transaction a request may have opened; nothing is pending in it.
        session.commit()
    session.connection(execution_options={"sqlite_immediate": True})
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


# -- the schema ---------------------------------------------------------------------------


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
