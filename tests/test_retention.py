"""Retention: media past their time lose their files, keep a row, and answer 410."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.helpers import TEST_CONFIG, run_queue, submit
from webapp import attempts, jobs
from webapp.config import Defaults
from webapp.extensions import db, huey
from webapp.media import media_root, purge_expired, store_image, sweep_orphan_files
from webapp.models import Media, now_utc

GRACE = float(TEST_CONFIG.get("ORPHAN_FILE_GRACE_SECONDS", Defaults.ORPHAN_FILE_GRACE_SECONDS))


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


# -- files no row names -----------------------------------------------------------------------


def test_files_of_a_cancelled_attempt_whose_worker_died_are_swept_after_the_grace(
    app: Flask, client: FlaskClient
) -> None:
    """A worker stores its pictures, the job is cancelled, the worker dies before noticing."""
    job = submit(client, "a lost attempt", parameters={"width": 128, "height": 128})
    claim = attempts.claim_job(job["id"])
    assert claim is not None
    image = Image.new("RGB", (128, 128), "teal")
    stored = [
        store_image(image, "png", 90, attempts.output_media_id(claim.token, i)) for i in range(2)
    ]
    left = [media_root() / p for s in stored for p in (s.storage_path, s.thumbnail_path)]
    assert all(p.exists() for p in left) and len(left) == 4
    later = time.time() + GRACE + 1
    # However old, a running attempt's files stay: it may still record them.
    assert sweep_orphan_files(attempts.live_output_ids, now=later) == 0

    jobs.cancel_job(job["id"])
    assert sweep_orphan_files(attempts.live_output_ids) == 0, "younger than the grace period"
    assert sweep_orphan_files(attempts.live_output_ids, now=later) == 4
    assert not any(p.exists() for p in left)
    assert client.get(job["status_url"]).get_json()["status"] == "cancelled"


def test_the_sweep_reads_a_large_store_in_batches(app: Flask) -> None:
    generated = media_root() / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    orphans = [generated / f"{uuid.uuid4()}.png" for _ in range(7)]
    for path in orphans:
        path.write_bytes(b"x")
    assert sweep_orphan_files(now=time.time() + GRACE + 1, batch=3) == 7
    assert not any(p.exists() for p in orphans)


def test_a_storage_folder_that_cannot_be_read_is_skipped(app: Flask) -> None:
    thumbnails = media_root() / "thumbnails"
    if thumbnails.is_dir():
        thumbnails.rmdir()
    thumbnails.write_bytes(b"not a folder")
    orphan = media_root() / "generated" / f"{uuid.uuid4()}.png"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x")
    assert sweep_orphan_files(now=time.time() + GRACE + 1) == 1
    assert thumbnails.read_bytes() == b"not a folder"


def test_the_sweep_keeps_recorded_fresh_and_foreign_files(app: Flask, client: FlaskClient) -> None:
    status = finished_job(client, outputs=2)
    recorded = files_of([m["id"] for m in status["media"]])
    root = media_root()
    orphan = uuid.uuid4()
    unfinished = root / "generated" / f".{orphan}.png.{uuid.uuid4().hex}.part"
    thumbnail = root / "thumbnails" / f"{orphan}.webp"
    fresh = root / "generated" / f"{uuid.uuid4()}.jpg"
    foreign = [
        root / "generated" / "notes.txt",
        root / "thumbnails" / ".DS_Store",
        root / "generated" / f"{str(uuid.uuid4()).upper()}.png",  # not a name Darkroom gives
    ]
    for path in (unfinished, thumbnail, fresh, *foreign):
        path.write_bytes(b"x")
    old = time.time() - GRACE - 60
    for path in (unfinished, thumbnail, *recorded, *foreign):
        os.utime(path, (old, old))
    (root / "generated" / f"{uuid.uuid4()}.d").mkdir()  # a folder is never removed

    assert sweep_orphan_files() == 2
    assert not unfinished.exists() and not thumbnail.exists()
    assert fresh.exists() and all(p.exists() for p in (*recorded, *foreign))
    for item in status["media"]:
        assert client.get(item["url"]).status_code == 200


def test_the_sweep_leaves_files_of_purged_and_deleted_media_alone_once_gone(
    app: Flask, client: FlaskClient
) -> None:
    """Rows kept for 410 answers have no files; the sweep finds nothing to do, and no error."""
    status = finished_job(client)
    assert purge_expired(now_utc() + timedelta(days=31)) == 1
    assert sweep_orphan_files(now=time.time() + GRACE + 1) == 0
    assert client.get(status["media"][0]["url"]).status_code == 410


def test_the_sweep_runs_once_an_hour_in_the_worker() -> None:
    def due(minute: int) -> set[str]:
        return {task.name for task in huey.read_periodic(datetime(2026, 11, 26, 3, minute))}

    assert "sweep_storage" in due(37)
    assert "sweep_storage" not in due(36) | due(38)
