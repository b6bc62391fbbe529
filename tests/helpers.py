"""Helpers for in-process tests: the test settings, a fresh-session client, the queue, submit.

tests/conftest.py points the queue at a scratch folder before this module (and so webapp)
is imported; pytest always loads it first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from webapp.config import PROJECT_ROOT
from webapp.extensions import huey

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
    "RATE_LIMIT_UPLOAD": "100000/minute",
    "ESTIMATE_CACHE_SECONDS": 0,  # tests change the history and read the estimate at once
}
"""Settings every in-process test app starts from (plus its own instance folder)."""


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


def csrf_token(client: FlaskClient) -> str:
    """A CSRF token for the pages' forms, read off the index page as a browser would."""
    html = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the create form carries a CSRF token"
    return match.group(1)


def submit(client: FlaskClient, prompt: str = "a red fox in the snow", **body: Any) -> dict:
    """Submit a job through the API and return its creation answer."""
    response = client.post("/api/v1/jobs/generate", json={"prompt": prompt, **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run_python(
    code: str, instance: Path, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter from the project root, on its own instance
    folder and SQLite files (no Redis, no DATABASE_URL), with extra environment settings."""
    env = {**os.environ, "DARKROOM_INSTANCE_PATH": str(instance), **settings}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
