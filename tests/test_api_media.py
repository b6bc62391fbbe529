"""Media endpoints after a job completes: download, thumbnail, info, delete, expiry, paths."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.helpers import run_queue, submit
from webapp.extensions import db
from webapp.models import Media, now_utc

API = "/api/v1"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

FORMATS = {
    # our name: (MIME type, extension, Pillow format)
    "png": ("image/png", ".png", "PNG"),
    "jpg": ("image/jpeg", ".jpg", "JPEG"),
    "webp": ("image/webp", ".webp", "WEBP"),
}


def generate(client: FlaskClient, prompt: str = "a red fox in the snow", **parameters) -> dict:
    """Submit a job, run it as the worker would, and return its completed status."""
    parameters = {"width": 256, "height": 192, "num_inference_steps": 1, **parameters}
    created = submit(client, prompt, parameters=parameters)
    assert run_queue() == 1
    job = client.get(created["status_url"]).get_json()
    assert job["status"] == "completed", job
    return job


def media_root(app: Flask) -> Path:
    return Path(app.config["MEDIA_ROOT"])


def assert_media_error(response, status: int) -> None:
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"detail", "request_id"}
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]


@pytest.fixture
def job(client: FlaskClient) -> dict:
    return generate(client)


@pytest.fixture
def media_id(job: dict) -> str:
    return job["media"][0]["id"]


# -- download ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_download_per_format(app: Flask, client: FlaskClient, tmp_path: Path, fmt: str) -> None:
    mime, ext, pil_format = FORMATS[fmt]
    job = generate(client, output_format=fmt)
    [item] = job["media"]
    assert item["mime_type"] == mime
    response = client.get(f"{API}/media/{item['id']}")
    assert response.status_code == 200
    assert response.mimetype == mime
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(
        rf'inline; filename="?{re.escape(item["id"] + ext)}"?',
        response.headers["Content-Disposition"],
    )
    assert len(response.data) == item["file_size_bytes"]
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.format == pil_format
        assert image.size == (item["width"], item["height"]) == (256, 192)
        image.load()
    # Named by id under the instance folder's media root, never by anything the user sent.
    stored = tmp_path / "instance" / "media" / "generated" / f"{item['id']}{ext}"
    assert media_root(app) == tmp_path / "instance" / "media"
    assert stored.is_file()
    assert stored.read_bytes() == response.data


def test_filename_never_comes_from_user_input(client: FlaskClient) -> None:
    prompt = 'evil"; filename="../../hack.exe'
    job = generate(client, prompt)
    [item] = job["media"]
    disposition = client.get(f"{API}/media/{item['id']}").headers["Content-Disposition"]
    assert re.fullmatch(rf'inline; filename="?{item["id"]}\.png"?', disposition)
    assert "hack" not in disposition and "evil" not in disposition


def test_conditional_get_with_etag(client: FlaskClient, media_id: str) -> None:
    first = client.get(f"{API}/media/{media_id}")
    etag = first.headers.get("ETag")
    assert etag and etag.startswith('"')
    assert first.headers.get("Last-Modified")
    again = client.get(f"{API}/media/{media_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    other = client.get(f"{API}/media/{media_id}", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    assert other.data == first.data


def test_etag_is_the_content_hash(client: FlaskClient, media_id: str) -> None:
    response = client.get(f"{API}/media/{media_id}")
    info = client.get(f"{API}/media/{media_id}/info").get_json()
    assert hashlib.sha256(response.data).hexdigest() == info["sha256"]
    assert response.headers["ETag"].strip('"') == info["sha256"]


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-199", 100, 199), ("bytes=5-5", 5, 5)],
)
def test_range_request(
    client: FlaskClient, media_id: str, range_header: str, start: int, end: int
) -> None:
    full = client.get(f"{API}/media/{media_id}").data
    response = client.get(f"{API}/media/{media_id}", headers={"Range": range_header})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(full)}"
    assert response.data == full[start : end + 1]
    assert len(response.data) == end - start + 1
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unsatisfiable_range_is_416(client: FlaskClient, media_id: str) -> None:
    size = len(client.get(f"{API}/media/{media_id}").data)
    response = client.get(f"{API}/media/{media_id}", headers={"Range": f"bytes={size + 10}-"})
    assert response.status_code == 416


# -- thumbnail --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "thumb"),
    [((2048, 1024), (512, 256)), ((256, 192), (256, 192)), ((128, 640), (102, 512))],
)
def test_thumbnail_is_webp_within_512(
    app: Flask, client: FlaskClient, size: tuple[int, int], thumb: tuple[int, int]
) -> None:
    job = generate(client, width=size[0], height=size[1])
    media_id = job["media"][0]["id"]
    response = client.get(f"{API}/media/{media_id}/thumbnail")
    assert response.status_code == 200
    assert response.mimetype == "image/webp"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.format == "WEBP"
        assert max(image.size) <= 512
        assert abs(image.width - thumb[0]) <= 1 and abs(image.height - thumb[1]) <= 1
    assert (media_root(app) / "thumbnails" / f"{media_id}.webp").is_file()
    etag = response.headers["ETag"]
    assert etag != client.get(f"{API}/media/{media_id}").headers["ETag"]
    cached = client.get(f"{API}/media/{media_id}/thumbnail", headers={"If-None-Match": etag})
    assert cached.status_code == 304


# -- info -------------------------------------------------------------------------------


def test_info_has_the_guides_fields(client: FlaskClient, job: dict, media_id: str) -> None:
    response = client.get(f"{API}/media/{media_id}/info")
    assert response.status_code == 200
    info = response.get_json()
    guide_keys = {
        "id",
        "type",
        "storage_path",
        "storage_url",
        "file_size_bytes",
        "mime_type",
        "file_extension",
        "width",
        "height",
        "created_at",
    }
    assert guide_keys <= set(info)
    assert info["id"] == media_id
    assert info["type"] == "image"
    assert info["storage_path"] == f"generated/{media_id}.png"
    assert info["storage_url"] == f"http://darkroom.test/api/v1/media/{media_id}"
    assert info["mime_type"] == "image/png"
    assert info["file_extension"] == ".png"
    assert (info["width"], info["height"]) == (256, 192)
    assert info["file_size_bytes"] == len(client.get(f"{API}/media/{media_id}").data)
    assert ISO_Z.match(info["created_at"])
    assert info["created_at"] == job["completed_at"]
    if info.get("expires_at"):  # 30 days of retention by default
        assert ISO_Z.match(info["expires_at"])
        assert info["expires_at"][:10] > info["created_at"][:10]


# -- delete -----------------------------------------------------------------------------


def test_delete_removes_record_file_and_thumbnail(
    app: Flask, client: FlaskClient, job: dict, media_id: str
) -> None:
    root = media_root(app)
    file_path = root / "generated" / f"{media_id}.png"
    thumb_path = root / "thumbnails" / f"{media_id}.webp"
    assert file_path.is_file() and thumb_path.is_file()
    response = client.delete(f"{API}/media/{media_id}")
    assert response.status_code == 204
    assert response.data == b""
    for suffix in ("", "/info", "/thumbnail"):
        gone = client.get(f"{API}/media/{media_id}{suffix}")
        assert_media_error(gone, 404)
        assert gone.get_json()["detail"] == "Media not found"
    assert not file_path.exists()
    assert not thumb_path.exists()
    assert_media_error(client.delete(f"{API}/media/{media_id}"), 404)
    status = client.get(f"/api/v1/jobs/status/{job['id']}").get_json()
    assert media_id not in [m["id"] for m in status["media"] or []]
    assert status["status"] == "completed"


@pytest.mark.parametrize("suffix", ["", "/info", "/thumbnail"])
@pytest.mark.parametrize("media_id", ["00000000-0000-4000-8000-000000000000", "nope"])
def test_unknown_media_is_404(client: FlaskClient, suffix: str, media_id: str) -> None:
    response = client.get(f"{API}/media/{media_id}{suffix}")
    assert response.status_code == 404
    assert response.get_json() == {
        "detail": "Media not found",
        "request_id": response.headers["X-Request-ID"],
    }


def test_delete_unknown_media_is_404(client: FlaskClient) -> None:
    response = client.delete(f"{API}/media/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.get_json()["detail"] == "Media not found"


# -- expiry -----------------------------------------------------------------------------


def _expire(media_id: str, ago: timedelta = timedelta(seconds=1)) -> None:
    row = db.session.get(Media, media_id)
    assert row is not None
    row.expires_at = now_utc() - ago
    db.session.commit()


@pytest.mark.parametrize("suffix", ["", "/thumbnail", "/info"])
def test_expired_media_is_410(client: FlaskClient, media_id: str, suffix: str) -> None:
    assert client.get(f"{API}/media/{media_id}{suffix}").status_code == 200
    _expire(media_id)
    response = client.get(f"{API}/media/{media_id}{suffix}")
    assert_media_error(response, 410)
    assert response.mimetype == "application/json"


def test_media_not_yet_expired_is_served(client: FlaskClient, media_id: str) -> None:
    _expire(media_id, ago=-timedelta(minutes=5))  # five minutes from now
    assert client.get(f"{API}/media/{media_id}").status_code == 200


def test_expired_media_can_still_be_deleted(app: Flask, client: FlaskClient, media_id: str) -> None:
    _expire(media_id)
    assert client.delete(f"{API}/media/{media_id}").status_code == 204
    assert not (media_root(app) / "generated" / f"{media_id}.png").exists()
    assert client.get(f"{API}/media/{media_id}/info").status_code == 404


# -- several outputs --------------------------------------------------------------------


def test_three_outputs_are_three_distinct_pictures(app: Flask, client: FlaskClient) -> None:
    job = generate(client, width=128, height=128, num_outputs=3)
    media = job["media"]
    assert len(media) == 3
    assert len({m["id"] for m in media}) == 3
    pixels = []
    for item in media:
        response = client.get(f"{API}/media/{item['id']}")
        assert response.status_code == 200
        with Image.open(io.BytesIO(response.data)) as image:
            assert image.size == (128, 128)
            pixels.append(image.convert("RGB").tobytes())
        assert (media_root(app) / "generated" / f"{item['id']}.png").is_file()
    assert len(set(pixels)) == 3


def test_same_seed_gives_same_pixels(client: FlaskClient) -> None:
    first = generate(client, "a castle", seed=7, width=128, height=128)
    second = generate(client, "a castle", seed=7, width=128, height=128)
    a = client.get(f"{API}/media/{first['media'][0]['id']}").data
    b = client.get(f"{API}/media/{second['media'][0]['id']}").data
    with Image.open(io.BytesIO(a)) as one, Image.open(io.BytesIO(b)) as two:
        assert one.convert("RGB").tobytes() == two.convert("RGB").tobytes()


# -- path tricks ------------------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> bytes:
    """A file beside the media root that must never be served."""
    content = b"TOP-SECRET-4f1c0e"
    (tmp_path / "instance" / "secret.txt").write_bytes(content)
    return content


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/media/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/media/..%2Fsecret.txt",
        "/api/v1/media/..%2Fsecret.txt/info",
        "/api/v1/media/..%2Fsecret.txt/thumbnail",
        "/api/v1/media/%2e%2e%2fsecret.txt",
        "/api/v1/media/..",
        "/api/v1/media/.",
        "/api/v1/media/...",
        "/api/v1/media/%2e%2e",
        "/api/v1/media/secret.txt",
        "/api/v1/media/..%5Csecret.txt",
        "/api/v1/media/%2Fetc%2Fpasswd",
        "/api/v1/media/darkroom.db",
        "/api/v1/media/generated%2F{id}.png",
        "/api/v1/media/{id}.png",
        "/api/v1/media/{id}%00.png",
        "/api/v1/media/{id}/..%2F..%2Fsecret.txt",
    ],
)
def test_path_tricks_are_404(client: FlaskClient, media_id: str, secret: bytes, path: str) -> None:
    response = client.get(path.format(id=media_id))
    assert response.status_code == 404
    assert response.is_json
    assert secret not in response.data
    assert b"root:" not in response.data
    assert not response.data.startswith(b"SQLite format")
