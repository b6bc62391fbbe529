"""Shared fixtures: a fresh instance folder (SQLite files, media) per test, and helpers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The queue object reads its file path at import time, so point it at a scratch folder
# before anything imports webapp. Each test still gets its own app database and media.
_QUEUE_DIR = tempfile.mkdtemp(prefix="darkroom-queue-")
os.environ["DARKROOM_INSTANCE_PATH"] = _QUEUE_DIR
for _name in ("DATABASE_URL", "REDIS_URL", "REPLICATE_API_TOKEN", "DARKROOM_PUBLIC_URL"):
    os.environ.pop(_name, None)

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.extensions import huey  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent

GUIDE_STATUS_FIELDS = frozenset(
    {
        "id",
        "status",
        "prompt",
        "parameters",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "duration_seconds",
        "retry_count",
        "error_message",
        "media",
        "progress",
    }
)
"""The fields of a job's status that the API guide shows."""


TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "DEMO_STEP_SECONDS": 0,
    "RETRY_BASE_SECONDS": 0.01,
    "RETRY_MAX_SECONDS": 0.05,
    "PUBLIC_URL": "http://darkroom.test",
    # Tests submit far faster than people; tests/test_ratelimit.py sets real limits.
    "RATE_LIMIT_CREATE": "100000/minute",
    "RATE_LIMIT_STATUS": "100000/minute",
    "ESTIMATE_CACHE_SECONDS": 0,  # tests change the history and read the estimate at once
}
"""Settings every in-process test app starts from (plus its own instance folder)."""


@pytest.fixture
def app_config(tmp_path: Path) -> dict[str, Any]:
    """The test configuration; tests may change it before `app` is built."""
    return {**TEST_CONFIG, "INSTANCE_PATH": str(tmp_path / "instance")}


class FreshSessionClient(FlaskClient):
    """A test client whose every request reads the database afresh, as in production.

    A test keeps one app context open, and Flask runs the client's requests inside it, so
    they share the test's session. Served requests each get a new session; here the shared
    one forgets what it loaded before each request, so an object a test (or a task it ran
    in-process) left in it cannot stand in for the row.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        from webapp.extensions import db

        db.session.expire_all()
        return super().open(*args, **kwargs)


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """An app with its own database and media folder, and an empty queue."""
    huey.flush()
    app = create_app(app_config)
    app.test_client_class = FreshSessionClient
    with app.app_context():
        yield app
        from webapp.extensions import db

        db.session.remove()
        db.engine.dispose()
    huey.flush()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


def queued_job_ids() -> list[str]:
    """Job ids waiting in the queue, in order."""
    return [t.args[0] for t in huey.pending() if t.name.endswith("run_job")]


def run_queue(limit: int = 100) -> int:
    """Run every queued job in this process, as the consumer would; returns how many ran."""
    from webapp.tasks import run_job

    ran = 0
    while ran < limit:
        task = huey.dequeue()
        if task is None:
            return ran
        if task.name.endswith("run_job"):
            run_job.call_local(*task.args)
            ran += 1
    return ran


def submit(client: FlaskClient, prompt: str = "a red fox in the snow", **body: Any) -> dict:
    """Submit a job through the API and return its creation answer."""
    response = client.post("/api/v1/jobs/generate", json={"prompt": prompt, **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()
