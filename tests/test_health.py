"""Health is honest: ready turns 503 when a store cannot take writes, and back when fixed."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from webapp.extensions import db, huey
from webapp.media import media_root
from webapp.tasks import beat


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite file, as a stuck writer would."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=1)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def ready(client: FlaskClient) -> tuple[int, dict]:
    answer = client.get("/api/v1/health/ready")
    return answer.status_code, answer.get_json()["services"]


def test_ready_when_everything_works(client: FlaskClient) -> None:
    status, services = ready(client)
    assert status == 200
    assert services["database"] and services["queue"] and services["storage"]


def test_database_that_takes_no_writes(app: Flask, client: FlaskClient) -> None:
    db.session.remove()
    with locked(db.engine.url.database):
        status, services = ready(client)
        assert status == 503 and services["database"] is False
        health = client.get("/api/v1/health")
        assert health.status_code == 503
        assert health.get_json()["status"] == "unhealthy"
    assert ready(client)[0] == 200


def test_queue_that_takes_no_writes(client: FlaskClient) -> None:
    with locked(huey.storage.filename):
        status, services = ready(client)
        assert status == 503 and services["queue"] is False and services["database"]
    assert ready(client)[0] == 200


def test_media_folder_gone_and_back(client: FlaskClient) -> None:
    root = media_root()
    moved = Path(str(root) + ".moved")
    shutil.move(root, moved)
    root.write_text("not a folder")
    try:
        status, services = ready(client)
        assert status == 503 and services["storage"] is False
    finally:
        root.unlink()
        shutil.move(moved, root)
    assert ready(client)[0] == 200


def test_health_reports_whether_a_worker_was_seen(app: Flask, client: FlaskClient) -> None:
    body = client.get("/api/v1/health").get_json()
    assert body["services"]["worker"] is False and body["status"] == "degraded"
    beat("test-host:1")
    body = client.get("/api/v1/health").get_json()
    assert body["services"]["worker"] is True and body["status"] == "healthy"
