"""Live previews: a running job's latest picture, kept by the worker and carried inline by
the page's one poll (no request per card), gone once the job ends."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.helpers import submit
from webapp import attempts
from webapp.extensions import db
from webapp.models import JobPreview
from webapp.tasks import run_job

PREVIEW = re.compile(r'<img class="live-preview" src="data:image/jpeg;base64,([^"]+)"')


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def run_in_thread(app: Flask, job_id: str) -> threading.Thread:
    def target() -> None:
        with app.app_context():
            run_job.call_local(job_id)
            db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_a_paced_demo_job_shows_its_drawing_coming_into_focus(
    app: Flask, client: FlaskClient
) -> None:
    app.config["DEMO_STEP_SECONDS"] = 0.3
    job_id = submit(client, model="demo", parameters={"num_inference_steps": 8})["id"]
    thread = run_in_thread(app, job_id)
    try:
        wait_for("a preview", lambda: db.session.get(JobPreview, job_id))
        page = client.get(f"/poll?id={job_id}").get_data(as_text=True)
        (encoded,) = PREVIEW.findall(page)
        picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert picture.format == "JPEG" and max(picture.size) <= attempts.PREVIEW_SIDE
        # The job page carries it too; the poll made no other request for it.
        assert PREVIEW.search(client.get(f"/jobs/{job_id}").get_data(as_text=True))
    finally:
        thread.join(30)
    db.session.rollback()
    assert db.session.get(JobPreview, job_id) is None, "a completed job keeps no preview"
    assert not PREVIEW.search(client.get(f"/poll?id={job_id}").get_data(as_text=True))


def test_an_unpaced_job_stores_no_preview(app: Flask, client: FlaskClient) -> None:
    job_id = submit(client, model="demo")["id"]
    run_job.call_local(job_id)
    assert db.session.query(JobPreview).count() == 0


def test_a_cancelled_job_takes_no_new_preview_and_loses_the_old(
    app: Flask, client: FlaskClient
) -> None:
    app.config["DEMO_STEP_SECONDS"] = 0.3
    job_id = submit(client, model="demo", parameters={"num_inference_steps": 20})["id"]
    thread = run_in_thread(app, job_id)
    try:
        wait_for("a preview", lambda: db.session.get(JobPreview, job_id))
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    finally:
        thread.join(30)
    assert not PREVIEW.search(client.get(f"/jobs/{job_id}").get_data(as_text=True))
    assert attempts.purge_previews() == 1
    assert db.session.get(JobPreview, job_id) is None
