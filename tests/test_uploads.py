"""Uploads: pictures sent as inputs, checked by content, stripped, deduplicated, expiring."""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from webapp import accounts, media, uploads
from webapp.extensions import db
from webapp.models import Upload, User, now_utc

API = "/api/v1"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ORIENTATION = 0x0112
GPS_IFD = 0x8825


def picture(fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: Any):
    """A real picture's bytes: a gradient, so that rotation can be seen."""
    image = Image.linear_gradient("L").resize(size).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims another size (its CRC made right): a bomb's header."""
    data = picture("PNG", (1, 1))
    start = data.index(b"IHDR")
    fields = struct.pack(">II", width, height) + data[start + 12 : start + 17]
    chunk = b"IHDR" + fields
    patched = chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:start] + patched + data[start + len(patched) :]


def upload(client: FlaskClient, data: bytes, name: str = "photo.png", **kwargs: Any) -> Any:
    return client.post(
        f"{API}/uploads",
        data={"file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        **kwargs,
    )


def stored_file(app: Flask, upload_id: str) -> Path:
    row = db.session.get(Upload, upload_id)
    assert row is not None
    return Path(app.config["MEDIA_ROOT"]) / row.storage_path


# -- a good upload ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "ext", "mode"),
    [
        ("PNG", "image/png", ".png", "RGBA"),
        ("JPEG", "image/jpeg", ".jpg", "RGB"),
        ("WEBP", "image/webp", ".webp", "RGB"),
    ],
)
def test_upload_answers_201_with_its_details(
    app: Flask, client: FlaskClient, fmt: str, mime: str, ext: str, mode: str
) -> None:
    sent = picture(fmt, (64, 48), mode)
    # The name and the Content-Type of the part say nothing: the content decides.
    response = client.post(
        f"{API}/uploads",
        data={"file": (io.BytesIO(sent), "x.gif", "text/plain")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert list(body) == [
        "id",
        "url",
        "mime_type",
        "width",
        "height",
        "file_size_bytes",
        "sha256",
        "expires_at",
    ]
    assert body["url"] == f"http://darkroom.test/api/v1/uploads/{body['id']}"
    assert body["mime_type"] == mime
    assert (body["width"], body["height"]) == (64, 48)
    assert body["sha256"] == hashlib.sha256(sent).hexdigest()
    assert ISO_Z.match(body["expires_at"])
    row = db.session.get(Upload, body["id"])
    assert row is not None and row.owner_id is None
    assert row.storage_path == f"uploads/{body['id']}{ext}"
    assert timedelta(hours=23, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=24)
    path = stored_file(app, body["id"])
    assert path.stat().st_size == body["file_size_bytes"]
    with Image.open(path) as image:
        assert image.format == fmt
        assert image.mode == mode  # a PNG keeps its transparency
        image.load()

    download = client.get(f"{API}/uploads/{body['id']}")
    assert download.status_code == 200
    assert download.mimetype == mime
    assert download.data == path.read_bytes()
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in download.headers["Cache-Control"]
    assert download.headers["Content-Disposition"] in (
        f"inline; filename={body['id']}{ext}",
        f'inline; filename="{body["id"]}{ext}"',
    )
    info = client.get(f"{API}/uploads/{body['id']}/info")
    assert info.status_code == 200
    assert info.get_json() == body


def test_download_supports_etag_and_range(client: FlaskClient) -> None:
    upload_id = upload(client, picture()).get_json()["id"]
    first = client.get(f"{API}/uploads/{upload_id}")
    etag = first.headers["ETag"]
    again = client.get(f"{API}/uploads/{upload_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    part = client.get(f"{API}/uploads/{upload_id}", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.data == first.data[:10]


def test_a_jpeg_with_several_pictures_keeps_the_first(app: Flask, client: FlaskClient) -> None:
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (20, 10), "red"), Image.new("RGB", (20, 10), "blue")
    first.save(buffer, "MPO", save_all=True, append_images=[second])  # as phones write them
    body = upload(client, buffer.getvalue()).get_json()
    assert body["mime_type"] == "image/jpeg"
    with Image.open(stored_file(app, body["id"])) as stored:
        assert stored.format == "JPEG"
        red, _, blue = stored.convert("RGB").getpixel((5, 5))
        assert red > 200 and blue < 50


def test_a_palette_png_keeps_its_transparent_colour(app: Flask, client: FlaskClient) -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=1)
    body = upload(client, buffer.getvalue()).get_json()
    with Image.open(stored_file(app, body["id"])) as stored:
        assert stored.mode == "P"
        assert stored.info.get("transparency") == 1


def test_an_upload_over_the_ordinary_body_limit_is_taken(app: Flask, client: FlaskClient) -> None:
    sent = noise_png(700)  # about 1.5 MB: beyond every other endpoint's 1 MB
    assert len(sent) > app.config["MAX_CONTENT_LENGTH"]
    response = upload(client, sent)
    assert response.status_code == 201, response.get_json()
    # Every other endpoint keeps its limit.
    big = client.post(
        f"{API}/jobs/generate",
        data=b'{"prompt": "' + b"x" * len(sent) + b'"}',
        content_type="application/json",
    )
    assert big.status_code == 413
    assert "1048576" in big.get_json()["detail"]


def test_a_chunked_upload_is_held_to_the_uploads_limit(app: Flask) -> None:
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    def send_chunked(data: bytes) -> tuple[str, bytes]:
        builder = EnvironBuilder(
            path=f"{API}/uploads", method="POST", data={"file": (io.BytesIO(data), "p.png")}
        )
        environ = builder.get_environ()
        del environ["CONTENT_LENGTH"]  # as a chunked body arrives: no length up front
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        body, status, _ = run_wsgi_app(app, environ, buffered=True)
        return status, b"".join(body)

    sent = noise_png(700)
    assert len(sent) > app.config["MAX_CONTENT_LENGTH"]
    status, _ = send_chunked(sent)
    assert status.startswith("201")
    app.config["MAX_UPLOAD_BYTES"] = 1_200_000  # with the framing's 64 KB: less than sent
    status, body = send_chunked(sent)
    assert status.startswith("413")
    assert b"limit of 1265536 bytes" in body


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "L"), ("PNG", "LA"), ("PNG", "I;16"), ("PNG", "1"), ("JPEG", "L"), ("JPEG", "CMYK")],
)
def test_other_picture_modes_are_kept(app: Flask, client: FlaskClient, fmt: str, mode: str) -> None:
    response = upload(client, picture(fmt, (20, 10), mode))
    assert response.status_code == 201, response.get_json()
    with Image.open(stored_file(app, response.get_json()["id"])) as stored:
        assert stored.size == (20, 10)
        assert stored.format == fmt
        stored.load()


def test_the_migration_adds_and_removes_the_uploads_table(app: Flask) -> None:
    import sqlite3

    from flask_migrate import downgrade, upgrade

    from webapp.database import MIGRATIONS

    def tables() -> set[str]:
        with sqlite3.connect(Path(app.instance_path) / "darkroom.db") as conn:
            rows = conn.execute("select name from sqlite_master where type in ('table', 'trigger')")
            return {r[0] for r in rows}

    db.session.remove()
    before = tables()
    downgrade(directory=str(MIGRATIONS), revision="0007")
    assert "uploads" not in tables()
    # The later tables go too (0009, 0010); the triggers on jobs are untouched.
    assert before - tables() == {"uploads", "job_inputs", "backends", "job_previews"}
    upgrade(directory=str(MIGRATIONS))
    assert tables() == before


# -- orientation and metadata -------------------------------------------------------------


def jpeg_with_exif(orientation: int = 6, gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "Camera Maker"
    if gps:
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)})
    return picture("JPEG", (80, 40), exif=exif.tobytes(), comment=b"taken at home")


def test_exif_orientation_is_applied(app: Flask, client: FlaskClient) -> None:
    sent = jpeg_with_exif(orientation=6)
    with Image.open(io.BytesIO(sent)) as original:
        assert original.size == (80, 40)
        assert original.getexif()[ORIENTATION] == 6
    body = upload(client, sent).get_json()
    assert (body["width"], body["height"]) == (40, 80)
    with Image.open(stored_file(app, body["id"])) as stored:
        assert stored.size == (40, 80)
        assert ORIENTATION not in stored.getexif()


def test_metadata_is_stripped_but_the_colour_profile_kept(app: Flask, client: FlaskClient) -> None:
    sent = jpeg_with_exif()
    with Image.open(io.BytesIO(sent)) as original:
        assert original.getexif().get_ifd(GPS_IFD)
    body = upload(client, sent).get_json()
    data = stored_file(app, body["id"]).read_bytes()
    with Image.open(io.BytesIO(data)) as stored:
        assert not stored.getexif()
        assert "exif" not in stored.info and "comment" not in stored.info
    assert b"Camera Maker" not in data and b"taken at home" not in data

    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    png = picture("PNG", (16, 16), icc_profile=icc, pnginfo=_png_text("Author", "Someone"))
    body = upload(client, png).get_json()
    data = stored_file(app, body["id"]).read_bytes()
    assert b"Someone" not in data and b"secret place" not in data
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.info.get("icc_profile") == icc


def _png_text(key: str, value: str) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(key, value)
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret place</x:xmpmeta>")
    return info


# -- bad uploads ----------------------------------------------------------------------------


def _gif() -> bytes:
    return picture("GIF", (8, 8), "P")


def _truncated() -> bytes:
    whole = noise_png(64)
    return whole[: len(whole) // 2]


def _lying_jpeg() -> bytes:
    """A JPEG's first bytes followed by garbage."""
    return picture("JPEG")[:200] + b"\x00" * 400


BAD = {
    "gif named png": (_gif, "image_type"),
    "text named png": (lambda: b"just some text, not a picture\n" * 5, "image_type"),
    "truncated png": (_truncated, "image_invalid"),
    "lying jpeg": (_lying_jpeg, "image_invalid"),
    "one byte": (lambda: b"\x89", "image_type"),
    "empty": (lambda: b"", "file_empty"),
    "bomb past Pillow's own limit": (lambda: png_claiming(100_000, 100_000), "image_too_large"),
    "bomb past ours": (lambda: png_claiming(8000, 8000), "image_too_large"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_are_422_naming_the_field(app: Flask, client: FlaskClient, case: str) -> None:
    make, kind = BAD[case]
    response = upload(client, make(), "photo.png")
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    [item] = body["detail"]
    assert set(item) == {"type", "loc", "msg", "input"}
    assert item["loc"] == ["body", "file"]
    assert item["type"] == kind
    assert item["msg"]
    assert db.session.query(Upload).count() == 0
    folder = Path(app.config["MEDIA_ROOT"]) / "uploads"
    assert not folder.exists() or not any(folder.iterdir())


def test_a_bomb_is_never_decoded(monkeypatch: pytest.MonkeyPatch, client: FlaskClient) -> None:
    """The size is read from the header; no pixel is decoded before the check."""

    def refuse(*_: Any) -> None:
        raise AssertionError("load() was called")

    bomb = png_claiming(8000, 8000)
    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse)
    response = upload(client, bomb)
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["type"] == "image_too_large"


def test_the_pixel_limit_is_a_setting(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_UPLOAD_PIXELS"] = 100
    assert upload(client, picture("PNG", (10, 10))).status_code == 201
    refused = upload(client, picture("PNG", (11, 10)))
    assert refused.status_code == 422
    assert "at most 100 pixels" in refused.get_json()["detail"][0]["msg"]


def test_a_file_over_the_byte_limit_is_413(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_UPLOAD_BYTES"] = 1000
    sent = picture("PNG", (64, 64), "RGB", compress_level=0)
    assert len(sent) > 1000
    response = upload(client, sent)
    assert response.status_code == 413
    assert response.get_json()["detail"] == "The file is larger than the limit of 1000 bytes"
    # A body beyond the file's limit and its framing is refused before it is read.
    huge = upload(client, b"\0" * (1000 + 70 * 1024))
    assert huge.status_code == 413
    assert db.session.query(Upload).count() == 0


def test_a_missing_file_field_is_422(client: FlaskClient) -> None:
    response = client.post(
        f"{API}/uploads",
        data={"picture": (io.BytesIO(picture()), "photo.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert response.get_json()["detail"] == [
        {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}
    ]


def test_a_body_that_is_not_multipart_is_415(client: FlaskClient) -> None:
    response = client.post(f"{API}/uploads", json={"file": "abc"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.get_json()["detail"]


def test_a_full_disk_pauses_uploads(monkeypatch: pytest.MonkeyPatch, client: FlaskClient) -> None:
    monkeypatch.setattr(uploads, "storage_problem", lambda: "media storage is not writable")
    response = upload(client, picture())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["detail"].startswith("Uploads are paused")
    monkeypatch.undo()

    def failing_disk(*_: Any) -> None:
        raise media.StorageUnwritable(OSError(28, "No space left on device"))

    monkeypatch.setattr(uploads, "write_atomically", failing_disk)
    response = upload(client, picture())
    assert response.status_code == 503
    assert "No space left on device" in response.get_json()["detail"]
    assert db.session.query(Upload).count() == 0


# -- the same bytes twice -------------------------------------------------------------------


def test_the_same_bytes_give_the_same_upload(app: Flask, client: FlaskClient) -> None:
    sent = picture()
    first = upload(client, sent).get_json()
    row = db.session.get(Upload, first["id"])
    assert row is not None
    row.expires_at = now_utc() + timedelta(hours=1)
    db.session.commit()
    again = upload(client, sent, "another-name.png")
    assert again.status_code == 201
    assert again.get_json()["id"] == first["id"]
    assert again.get_json()["expires_at"] >= first["expires_at"]  # its 24 hours start again
    other = upload(client, picture(size=(65, 48))).get_json()
    assert other["id"] != first["id"]
    assert db.session.query(Upload).count() == 2
    assert len(list((Path(app.config["MEDIA_ROOT"]) / "uploads").iterdir())) == 2


# -- delete, unknown ids --------------------------------------------------------------------


def test_delete_removes_row_and_file(app: Flask, client: FlaskClient) -> None:
    upload_id = upload(client, picture()).get_json()["id"]
    path = stored_file(app, upload_id)
    response = client.delete(f"{API}/uploads/{upload_id}")
    assert response.status_code == 204
    assert not path.exists()
    for suffix in ("", "/info"):
        gone = client.get(f"{API}/uploads/{upload_id}{suffix}")
        assert gone.status_code == 404
        assert gone.get_json()["detail"] == "Upload not found"
    assert client.delete(f"{API}/uploads/{upload_id}").status_code == 404


@pytest.mark.parametrize("suffix", ["", "/info"])
@pytest.mark.parametrize("upload_id", ["00000000-0000-4000-8000-000000000000", "..", "nope"])
def test_unknown_uploads_are_404(client: FlaskClient, suffix: str, upload_id: str) -> None:
    response = client.get(f"{API}/uploads/{upload_id}{suffix}")
    assert response.status_code == 404
    assert response.get_json() == {
        "detail": "Upload not found",
        "request_id": response.headers["X-Request-ID"],
    }


# -- expiry and the storage sweep -------------------------------------------------------------


def test_unused_uploads_are_removed_after_their_time(app: Flask, client: FlaskClient) -> None:
    old = upload(client, picture()).get_json()["id"]
    fresh = upload(client, picture(size=(10, 10))).get_json()["id"]
    old_path, fresh_path = stored_file(app, old), stored_file(app, fresh)
    row = db.session.get(Upload, old)
    assert row is not None
    row.expires_at = now_utc() - timedelta(seconds=1)
    db.session.commit()
    assert client.get(f"{API}/uploads/{old}").status_code == 410
    assert client.get(f"{API}/uploads/{old}/info").get_json()["detail"] == "Upload has expired"

    assert uploads.sweep_expired() == 1
    db.session.expire_all()
    assert db.session.get(Upload, old) is None
    assert not old_path.exists()
    assert db.session.get(Upload, fresh) is not None
    assert fresh_path.exists()
    assert client.get(f"{API}/uploads/{old}").status_code == 404
    assert uploads.sweep_expired() == 0


def test_the_upkeep_task_sweeps_uploads(app: Flask, client: FlaskClient) -> None:
    from webapp.tasks import remove_expired_uploads

    upload_id = upload(client, picture()).get_json()["id"]
    row = db.session.get(Upload, upload_id)
    assert row is not None
    row.expires_at = now_utc() - timedelta(minutes=1)
    db.session.commit()
    remove_expired_uploads.call_local()
    db.session.expire_all()
    assert db.session.get(Upload, upload_id) is None


def test_the_orphan_sweep_keeps_upload_files_with_rows(app: Flask, client: FlaskClient) -> None:
    upload_id = upload(client, picture()).get_json()["id"]
    kept = stored_file(app, upload_id)
    folder = kept.parent
    orphan = folder / "11111111-1111-4111-8111-111111111111.png"
    orphan.write_bytes(b"left by a crash")
    stranger = folder / "notes.txt"  # not named by an id: not ours
    stranger.write_text("keep me")
    removed = media.sweep_orphan_files(now=time.time() + 10 * 3600)
    assert removed == 1
    assert kept.exists()
    assert not orphan.exists()
    assert stranger.exists()


def test_uploads_count_toward_the_storage_cap(app: Flask, client: FlaskClient) -> None:
    media._STORED_BYTES.clear()
    body = upload(client, picture()).get_json()
    media._STORED_BYTES.clear()
    assert media.stored_bytes() == body["file_size_bytes"]


# -- accounts ---------------------------------------------------------------------------


@pytest.fixture
def accounts_on(app: Flask) -> Any:
    app.config["AUTH"] = "on"
    alice = accounts.create_user("alice", "correct horse battery", admin=True)
    bob = accounts.create_user("bob", "correct horse battery")
    return alice, bob


def bearer(user: User, *scopes: str) -> dict[str, str]:
    _, key = accounts.create_key(user, "k", list(scopes))
    return {"Authorization": f"Bearer {key}"}


def test_uploads_belong_to_their_owner(app: Flask, client: FlaskClient, accounts_on: Any) -> None:
    alice, bob = accounts_on
    bob_key = bearer(bob, "generate", "read", "delete")
    carol = accounts.create_user("carol", "correct horse battery")
    carol_key = bearer(carol, "generate", "read", "delete")
    sent = picture()
    mine = upload(client, sent, headers=bob_key)
    assert mine.status_code == 201
    body = mine.get_json()
    row = db.session.get(Upload, body["id"])
    assert row is not None and row.owner_id == bob.id
    # The URL is signed: it downloads with no key, but never deletes.
    assert "signature=" in body["url"]
    path = body["url"].removeprefix("http://darkroom.test")
    assert client.get(path).status_code == 200
    assert client.delete(path).status_code == 401
    # Another user: 404, as an id that does not exist, for every operation.
    for method, suffix in (("get", ""), ("get", "/info"), ("delete", "")):
        answer = getattr(client, method)(f"{API}/uploads/{body['id']}{suffix}", headers=carol_key)
        assert answer.status_code == 404
        assert answer.get_json()["detail"] == "Upload not found"
    # The same bytes from another user are another upload.
    theirs = upload(client, sent, headers=carol_key).get_json()
    assert theirs["id"] != body["id"]
    assert upload(client, sent, headers=bob_key).get_json()["id"] == body["id"]
    # A key with the `admin` scope sees everyone's.
    admin = bearer(alice, "admin")
    assert client.get(f"{API}/uploads/{body['id']}/info", headers=admin).status_code == 200
    assert client.delete(f"{API}/uploads/{body['id']}", headers=bob_key).status_code == 204


def test_each_operation_needs_its_scope(app: Flask, client: FlaskClient, accounts_on: Any) -> None:
    _, bob = accounts_on
    assert upload(client, picture()).status_code == 401
    read_only = bearer(bob, "read")
    refused = upload(client, picture(), headers=read_only)
    assert refused.status_code == 403
    assert refused.get_json()["detail"] == "This API key lacks the 'generate' scope"
    upload_id = upload(client, picture(), headers=bearer(bob, "generate")).get_json()["id"]
    assert client.get(f"{API}/uploads/{upload_id}", headers=read_only).status_code == 200
    denied = client.delete(f"{API}/uploads/{upload_id}", headers=read_only)
    assert denied.status_code == 403
    assert "'delete'" in denied.get_json()["detail"]
    assert client.get(f"{API}/uploads/{upload_id}/info").status_code == 401


def test_a_cross_site_upload_is_refused(client: FlaskClient) -> None:
    response = upload(client, picture(), headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert db.session.query(Upload).count() == 0
