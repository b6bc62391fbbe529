"""Baseline apps, served by the Procfile's own gunicorn command line (`bench.baselines:app`).

(a) `GET /json`: a bare Flask JSON endpoint.
(b) `GET /read/<id>`: a minimal Flask-SQLAlchemy read of one row by primary key.
(c) `POST /insert`: a minimal insert of one row in its own (IMMEDIATE) transaction.
And `GET /static/<file>`: Flask's static file serving, the baseline of media downloads.

The SQLite file (`BENCH_BASELINE_DB`) gets the same connection settings as Darkroom's
(webapp/database.py): driver autocommit off our hands, a 15 s timeout, WAL,
synchronous=NORMAL, busy_timeout=15000, foreign keys, and BEGIN IMMEDIATE for writes.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, String, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SEED_ROWS = 1000

DDL = (
    "CREATE TABLE IF NOT EXISTS items ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(64) NOT NULL, "
    "payload TEXT NOT NULL, created_at DATETIME NOT NULL)"
)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


class Item(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


def init_db(path: str, rows: int = SEED_ROWS) -> None:
    """Create the baseline database with `rows` rows (run once, before gunicorn starts)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(DDL)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    conn.executemany(
        "INSERT INTO items (name, payload, created_at) VALUES (?, ?, ?)",
        [(f"item {i}", f"payload of item {i}", now) for i in range(rows)],
    )
    conn.commit()
    conn.close()


def create_app() -> Flask:
    static_dir = os.environ.get("BENCH_STATIC_DIR")
    app = Flask(__name__, static_folder=static_dir or None, static_url_path="/static")
    path = os.environ.get("BENCH_BASELINE_DB", "/tmp/bench-baseline.db")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "connect_args": {"timeout": 15, "isolation_level": None, "check_same_thread": False}
    }
    db.init_app(app)
    with app.app_context():
        engine = db.engine

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
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @app.get("/json")
    def bare_json() -> Any:
        return jsonify(status="ok", service="baseline")

    @app.get("/read/<int:item_id>")
    def read(item_id: int) -> Any:
        item = db.session.get(Item, item_id)
        if item is None:
            return jsonify(detail="not found"), 404
        return jsonify(id=item.id, name=item.name, payload=item.payload)

    @app.post("/insert")
    def insert() -> Any:
        body = request.get_json(silent=True) or {}
        session = db.session()
        session.connection(execution_options={"sqlite_immediate": True})
        item = Item(
            name=str(body.get("name", "x"))[:64],
            payload=str(body.get("payload", "")),
            created_at=datetime.now(UTC).replace(tzinfo=None),
        )
        session.add(item)
        session.commit()
        return jsonify(id=item.id), 201

    return app


app = create_app()
