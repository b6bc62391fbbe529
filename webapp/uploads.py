"""Uploaded input pictures: checked, cleaned, stored once per owner, removed when unused.

A picture is recognised by its content (what Pillow opens it as: PNG, JPEG or WebP), never
by its name or Content-Type. Its size in pixels is read from the header and checked before
any pixel is decoded, so a decompression bomb costs nothing. The stored copy is re-encoded
in the same format with the EXIF orientation applied and every piece of metadata dropped
(EXIF with GPS, XMP, text chunks, comments) except the ICC colour profile, which says how
to read the colours and names no person or place. Animated files (and JPEGs holding
several pictures) keep their first one.

Identical bytes from the same owner are one upload (looked up by sha256 of the bytes sent).
An upload lives for `UPLOAD_LIFETIME`; `sweep_expired` removes it after that.
A job that uses an upload extends its `expires_at` to the job's media retention
(`webapp.inputs`), and the sweep never removes one a waiting or running job takes.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from flask import current_app
from PIL import Image, ImageOps
from sqlalchemy import Exists, delete, select

from webapp.database import write_transaction
from webapp.extensions import db
from webapp.media import (
    FORMATS,
    UPLOADS_FOLDER,
    StorageUnavailable,
    StorageUnwritable,
    remove_files,
    storage_problem,
    write_atomically,
)
from webapp.models import ACTIVE_STATUSES, Job, JobInput, Upload, new_id, now_utc
from webapp.validation import RequestInvalid, error_item

log = logging.getLogger(__name__)

UPLOAD_LIFETIME = timedelta(hours=24)
FIELD: list[str | int] = ["body", "file"]
ACCEPTED = {pil: (mime, ext) for pil, mime, ext in FORMATS.values()}
"""Pillow format → (MIME type, extension) of the pictures we take: PNG, JPEG, WebP."""
JPEG_QUALITY = 95  # an input is re-encoded once; keep it close to what was sent
WEBP_QUALITY = 95


class UploadNotFound(Exception):
    """No upload has this id (or it is another user's)."""


class UploadExpired(Exception):
    """The upload's time is up; the sweep removes it."""


class UploadTooLarge(Exception):
    """The file is larger than `MAX_UPLOAD_BYTES`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit} bytes")


@dataclass
class CleanPicture:
    """A checked picture, re-encoded without its metadata, ready to store."""

    data: bytes
    mime_type: str
    file_extension: str
    width: int
    height: int


def _refused(kind: str, msg: str) -> RequestInvalid:
    """A 422 naming the file field (the bytes themselves are not echoed back)."""
    return RequestInvalid([error_item(kind, FIELD, msg, None)])


def read_limited(stream: IO[bytes], limit: int) -> bytes:
    """The stream's bytes, or `UploadTooLarge` as soon as there are more than `limit`."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(limit)
    return data


def clean_picture(data: bytes, max_pixels: int) -> CleanPicture:
    """Check that `data` is a whole PNG, JPEG or WebP picture of at most `max_pixels`, and
    re-encode it upright and without metadata; `RequestInvalid` (422) otherwise."""
    if not data:
        raise _refused("file_empty", "The file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refused("image_too_large", f"The picture has too many pixels: {exc}") from exc
    except Exception as exc:  # Pillow raises many kinds for bytes it cannot read
        raise _refused("image_type", "The file should be a PNG, JPEG or WebP picture") from exc
    with image:
        # Only the header has been read: the size is checked before any pixel is decoded.
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise _refused(
                "image_too_large",
                f"The picture should have at most {max_pixels} pixels, "
                f"it has {image.width}x{image.height} = {pixels}",
            )
        if pixels == 0:
            raise _refused("image_invalid", "The picture has no pixels")
        # Pillow opens a JPEG holding several pictures (many phones' photos) as "MPO".
        pil_format = "JPEG" if image.format == "MPO" else str(image.format)
        icc_profile = image.info.get("icc_profile")
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
        except Exception as exc:  # truncated, corrupt, or lying about itself
            raise _refused(
                "image_invalid", "The picture is truncated or damaged and cannot be read"
            ) from exc
    mime_type, extension = ACCEPTED[pil_format]
    try:
        data = _encode_bare(upright, pil_format, icc_profile)
    except (OSError, ValueError) as exc:  # a mode or profile the encoder will not write
        raise _refused("image_invalid", "The picture cannot be stored in its format") from exc
    return CleanPicture(
        data=data,
        mime_type=mime_type,
        file_extension=extension,
        width=upright.width,
        height=upright.height,
    )


def _encode_bare(image: Image.Image, pil_format: str, icc_profile: bytes | None) -> bytes:
    """The pixels in `pil_format` with nothing else but transparency and the ICC profile."""
    transparency = image.info.get("transparency")
    image.info = {}  # EXIF, XMP, text chunks, comments: none of it is written again
    extra: dict[str, object] = {"exif": b""}
    if icc_profile:
        extra["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    if pil_format == "PNG":
        if transparency is not None:
            extra["transparency"] = transparency
        image.save(buffer, "PNG", compress_level=4, **extra)
    elif pil_format == "JPEG":
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, **extra)
    else:
        image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4, **extra)
    return buffer.getvalue()


def _same_bytes(owner_id: str | None, sha256: str) -> Upload | None:
    """The owner's upload of these exact bytes, if there is one."""
    owner = Upload.owner_id.is_(None) if owner_id is None else Upload.owner_id == owner_id
    return db.session.scalars(
        select(Upload).where(owner, Upload.sha256 == sha256).order_by(Upload.created_at).limit(1)
    ).first()


def _renewed(owner_id: str | None, sha256: str, now: datetime) -> Upload | None:
    """The owner's upload of these bytes with its lifetime started afresh, if there is one.

    Renewed in a write transaction, so the expiry sweep either removed it first or sees it
    renewed.
    """
    if _same_bytes(owner_id, sha256) is None:  # the usual case: no write transaction
        return None
    with write_transaction():
        found = _same_bytes(owner_id, sha256)
        if found is not None and found.expires_at < now + UPLOAD_LIFETIME:
            found.expires_at = now + UPLOAD_LIFETIME
    return found


def create_upload(data: bytes, owner_id: str | None) -> Upload:
    """Store a sent picture (or find the owner's earlier upload of the same bytes)."""
    config = current_app.config
    if len(data) > int(config["MAX_UPLOAD_BYTES"]):
        raise UploadTooLarge(int(config["MAX_UPLOAD_BYTES"]))
    sha256 = hashlib.sha256(data).hexdigest()
    found = _renewed(owner_id, sha256, now_utc())
    if found is not None:
        return found
    picture = clean_picture(data, int(config["MAX_UPLOAD_PIXELS"]))
    problem = storage_problem()
    if problem:
        raise StorageUnavailable(problem)
    upload_id = new_id()
    path = f"{UPLOADS_FOLDER}/{upload_id}{picture.file_extension}"
    try:
        write_atomically(path, picture.data)
    except StorageUnwritable as exc:  # a disk that just failed: as when the check sees it
        raise StorageUnavailable(str(exc)) from exc
    now = now_utc()
    try:
        with write_transaction():
            # Two identical uploads at once: the second one finds the first here (SQLite
            # serialises write transactions; elsewhere a rare twin row is harmless).
            found = _same_bytes(owner_id, sha256)
            if found is None:
                upload = Upload(
                    id=upload_id,
                    owner_id=owner_id,
                    sha256=sha256,
                    mime_type=picture.mime_type,
                    file_extension=picture.file_extension,
                    storage_path=path,
                    width=picture.width,
                    height=picture.height,
                    file_size_bytes=len(picture.data),
                    created_at=now,
                    expires_at=now + UPLOAD_LIFETIME,
                )
                db.session.add(upload)
    except BaseException:
        remove_files(path)  # no row will ever name it
        raise
    if found is not None:
        remove_files(path)
        return found
    return upload


def get_upload(upload_id: str, owner: str | None = None) -> Upload:
    """Fetch an upload or raise `UploadNotFound`; with an `owner`, another user's upload is
    not found either."""
    upload = db.session.get(Upload, upload_id)
    if upload is None or (owner is not None and upload.owner_id != owner):
        raise UploadNotFound(upload_id)
    return upload


def get_live_upload(upload_id: str, owner: str | None = None) -> Upload:
    """Fetch an upload whose time is not up; `UploadExpired` (410) once it is."""
    upload = get_upload(upload_id, owner)
    if upload.is_expired():
        raise UploadExpired(upload_id)
    return upload


def delete_upload(upload_id: str, owner: str | None = None) -> None:
    """Delete an upload's row, then its file."""
    with write_transaction():
        upload = get_upload(upload_id, owner)
        path = upload.storage_path
        db.session.delete(upload)
    remove_files(path)  # after the commit: a failed commit keeps row and file together


def _taken_by_active_job() -> Exists:
    """A condition on `Upload`: a waiting or running job takes it as an input."""
    return (
        select(JobInput.upload_id)
        .join(Job, Job.id == JobInput.job_id)
        .where(JobInput.upload_id == Upload.id, Job.status.in_(ACTIVE_STATUSES))
        .exists()
    )


def sweep_expired(now: datetime | None = None, batch: int = 500) -> int:
    """Remove the uploads whose time is up (rows, then files); returns how many."""
    now = now or now_utc()
    removed = 0
    while True:
        rows = db.session.execute(
            select(Upload.id, Upload.storage_path)
            .where(Upload.expires_at <= now, ~_taken_by_active_job())
            .limit(batch)
        ).all()
        db.session.rollback()
        if not rows:
            break
        with write_transaction():
            # Guarded again: one renewed since the read above stays.
            gone = db.session.scalars(
                delete(Upload)
                .where(
                    Upload.id.in_([r.id for r in rows]),
                    Upload.expires_at <= now,
                    ~_taken_by_active_job(),
                )
                .returning(Upload.id)
                .execution_options(synchronize_session=False)
            ).all()
        remove_files(*(r.storage_path for r in rows if r.id in set(gone)))
        removed += len(gone)
        if len(rows) < batch:
            break
    if removed:
        log.info("uploads: removed %d past their time", removed)
    return removed
