"""Retention: media past their time lose their files, keep a row, and answer 410."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import run_queue, submit
from webapp.extensions import db
from webapp.media import media_root, purge_expired
from webapp.models import Media, now_utc


def finished_job(client: FlaskClient, outputs: int = 1) -> dict:
    job = submit(
        client, "an old picture", parameters={"width": 128, "height": 128, "num_outputs": outputs}
    )
    assert run_queue() == 1
    return client.get(job["status_url"]).get_json()


def files_of(media_ids: list[str]) -> list:
    rows = db.session.query(Media).filter(Media.id.in_(media_ids)).all()
    return [media_root() / p for m in rows for p in (m.storage_path, m.thumbnail_path)]


def test_media_are_kept_until_their_time(app: Flask, client: FlaskClient) -> None:
    status = finished_job(client)
    assert purge_expired(now_utc() + timedelta(days=29)) == 0
    media_id = status["media"][0]["id"]
    assert client.get(f"/api/v1/media/{media_id}").status_code == 200


def test_expired_media_are_purged_and_answer_410(app: Flask, client: FlaskClient) -> None:
    status = finished_job(client, outputs=2)
    ids = [m["id"] for m in status["media"]]
    paths = files_of(ids)
    assert len(paths) == 4 and all(p.exists() for p in paths)
    # Shift the clock past the 30 days instead of waiting for them.
    assert purge_expired(now_utc() + timedelta(days=30, seconds=1)) == 2
    assert not any(p.exists() for p in paths)
    for media_id in ids:
        for suffix in ("", "/thumbnail", "/info"):
            answer = client.get(f"/api/v1/media/{media_id}{suffix}")
            assert answer.status_code == 410, suffix
            assert answer.get_json()["detail"] == "Media has expired"
    # The job stays listed, its media marked expired.
    job = client.get(f"/api/v1/jobs/status/{status['id']}").get_json()
    assert job["status"] == "completed" and len(job["media"]) == 2
    assert all(m["expired"] for m in job["media"])
    listed = client.get("/api/v1/jobs").get_json()["jobs"][0]
    assert listed["id"] == status["id"] and all(m["expired"] for m in listed["media"])
    # A second run finds nothing more to do.
    assert purge_expired(now_utc() + timedelta(days=31)) == 0


def test_a_shortened_retention_applies_to_older_media(app: Flask, client: FlaskClient) -> None:
    status = finished_job(client)
    app.config["RETENTION_DAYS"] = 7
    assert purge_expired(now_utc() + timedelta(days=8)) == 1
    assert client.get(f"/api/v1/media/{status['media'][0]['id']}").status_code == 410


def test_zero_days_keeps_media_forever(app: Flask, app_config: dict, client: FlaskClient) -> None:
    app.config["RETENTION_DAYS"] = 0
    status = finished_job(client)
    assert status["media"][0]["expires_at"] is None
    assert purge_expired(now_utc() + timedelta(days=3650)) == 0


def test_a_missing_file_does_not_stop_the_purge(app: Flask, client: FlaskClient) -> None:
    first, second = finished_job(client), finished_job(client)
    for path in files_of([first["media"][0]["id"]]):
        path.unlink()
    assert purge_expired(now_utc() + timedelta(days=31)) == 2
    assert not any(p.exists() for p in files_of([second["media"][0]["id"]]))
