"""Media storage: files named by id under the media root, thumbnails, expiry and collection.

The uploaded input pictures (`webapp.uploads`) live under the same root, in `uploads/`: the
storage check, the size cap and the orphan sweep count them too.

Serving the files over HTTP is the views' part (`webapp.api.media`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from PIL import Image
from sqlalchemy import func, or_, select, update

from webapp.database import write_transaction
from webapp.extensions import db
from webapp.models import Media, Upload, new_id, now_utc

log = logging.getLogger(__name__)

FORMATS = {
    # our name: (Pillow format, MIME type, file extension)
    "png": ("PNG", "image/png", ".png"),
    "jpg": ("JPEG", "image/jpeg", ".jpg"),
    "webp": ("WEBP", "image/webp", ".webp"),
}
THUMBNAIL_SIDE = 512
STORAGE_FOLDERS = ("generated", "thumbnails")
"""The folders of media files (named by media id)."""
UPLOADS_FOLDER = "uploads"
SWEPT_FOLDERS: dict[str, type[Media] | type[Upload]] = {
    "generated": Media,
    "thumbnails": Media,
    UPLOADS_FOLDER: Upload,
}
"""Each folder the orphan sweep reads, and the table whose ids name its files."""


class MediaNotFound(Exception):
    """No media item has this id."""


class MediaExpired(Exception):
    """The media item's retention period has passed."""


@dataclass
class StoredImage:
    """A file written to storage, not yet recorded in the database."""

    id: str
    storage_path: str
    thumbnail_path: str
    mime_type: str
    file_extension: str
    file_size_bytes: int
    width: int
    height: int
    sha256: str

    def to_media(self, job_id: str, position: int, now: datetime) -> Media:
        """The database row for this file."""
        days = int(current_app.config["RETENTION_DAYS"])
        return Media(
            id=self.id,
            job_id=job_id,
            position=position,
            type="image",
            mime_type=self.mime_type,
            file_extension=self.file_extension,
            storage_path=self.storage_path,
            thumbnail_path=self.thumbnail_path,
            file_size_bytes=self.file_size_bytes,
            width=self.width,
            height=self.height,
            sha256=self.sha256,
            created_at=now,
            expires_at=now + timedelta(days=days) if days > 0 else None,
        )


def media_root() -> Path:
    """The folder that holds every media file."""
    return Path(current_app.config["MEDIA_ROOT"])


def resolve(relative: str) -> Path:
    """Turn a stored relative path into an absolute one that is certain to be under the root."""
    root = media_root().resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise MediaNotFound(relative)
    return path


class StorageUnwritable(Exception):
    """Media could not be written (read-only, full, failing disk): transient, named by cause."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"media storage is not writable: {error.strerror or type(error).__name__}")


class StorageUnavailable(Exception):
    """New jobs are refused until storage can take their media; the reason says why."""

    RETRY_AFTER = 30


def storage_problem() -> str | None:
    """Why media cannot be stored now (not writable, below the free-space floor, over the
    size cap), or None. Read by `/health/ready` and before every new job."""
    config = current_app.config
    root = media_root()
    try:
        # Never created here: a missing folder may be a storage mount that went away.
        with tempfile.NamedTemporaryFile(dir=root, prefix=".health-"):
            pass
        free_mb = shutil.disk_usage(root).free / 2**20
    except OSError as exc:
        return f"media storage is not writable: {exc.strerror or type(exc).__name__}"
    floor = float(config["MIN_FREE_DISK_MB"])
    if free_mb < floor:
        return f"media storage has {free_mb:.0f} MB free, below the floor of {floor:.0f} MB"
    cap = float(config.get("MAX_STORAGE_GB") or 0)
    if cap > 0 and stored_bytes() >= cap * 2**30:
        return f"media storage holds its cap of {cap:g} GB"
    return None


_STORED_BYTES: dict[str, tuple[float, int]] = {}
STORED_BYTES_SECONDS = 10.0  # how long a process reuses the media total


def stored_bytes() -> int:
    """The size of all media pictures and uploads (the database's record, reread every few
    seconds)."""
    key = str(db.engine.url)
    cached = _STORED_BYTES.get(key)
    if cached and time.monotonic() - cached[0] < STORED_BYTES_SECONDS:
        return cached[1]
    total = sum(
        int(db.session.scalar(select(func.coalesce(func.sum(model.file_size_bytes), 0))) or 0)
        for model in (Media, Upload)
    )
    _STORED_BYTES[key] = (time.monotonic(), total)
    return total


def write_atomically(relative: str, data: bytes) -> None:
    """Write to a temporary name in the same folder, flush to disk, then rename into place."""
    target = media_root() / relative
    # Named after the target, so a write cut off by a crash can be found and removed.
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except OSError as exc:
        raise StorageUnwritable(exc) from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def encode(image: Image.Image, output_format: str, quality: int) -> bytes:
    """Encode an image in one of our output formats."""
    pil_format = FORMATS[output_format][0]
    buffer = io.BytesIO()
    if pil_format == "PNG":
        # Level 4 is close to the default's size at a fraction of its time on large images.
        image.save(buffer, "PNG", compress_level=4)
    elif pil_format == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def make_thumbnail(image: Image.Image) -> bytes:
    """A WebP picture whose longest side is at most 512 pixels."""
    thumb = image.copy()
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGB")
    # reducing_gap lets Pillow shrink by whole factors first, then resample the rest.
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumb.save(buffer, "WEBP", quality=80, method=4)
    return buffer.getvalue()


def store_image(
    image: Image.Image, output_format: str, quality: int, media_id: str | None = None
) -> StoredImage:
    """Write an image and its thumbnail to storage under the given id, or a fresh one."""
    media_id = media_id or new_id()
    _, mime, ext = FORMATS[output_format]
    data = encode(image, output_format, quality)
    stored = StoredImage(
        id=media_id,
        storage_path=f"generated/{media_id}{ext}",
        thumbnail_path=f"thumbnails/{media_id}.webp",
        mime_type=mime,
        file_extension=ext,
        file_size_bytes=len(data),
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    write_atomically(stored.storage_path, data)
    write_atomically(stored.thumbnail_path, make_thumbnail(image))
    return stored


def remove_files(*relatives: str | None) -> None:
    """Delete stored files, ignoring ones already gone."""
    for relative in relatives:
        if relative:
            try:
                resolve(relative).unlink(missing_ok=True)
            except (MediaNotFound, OSError):
                log.warning("could not remove media file %s", relative, exc_info=True)


def _media_id_of(name: str) -> str | None:
    """The media id a stored file's name carries: `ID.ext`, or `.ID.ext.HEX.part` mid-write."""
    if name.startswith(".") and name.endswith(".part"):
        name = name[1:]
    candidate = name.partition(".")[0]
    try:
        return candidate if str(uuid.UUID(candidate)) == candidate else None
    except ValueError:
        return None


def sweep_orphan_files(
    live_ids: Callable[[], set[str]] | None = None,
    now: float | None = None,
    batch: int = 500,
) -> int:
    """Remove files that no media (or upload) row names, once older than
    `ORPHAN_FILE_GRACE_SECONDS`.

    They are what a process killed at the wrong moment leaves: a worker whose job was
    cancelled or deleted while it wrote its pictures, or a delete cut off between its commit
    and its file removals. A running attempt's files have no row until it completes; the
    ids it may still record come from `live_ids` and are kept, whatever their age. The rows
    and those ids are read after the files were listed, live ids first, so an attempt that
    completes in between is seen either way. Files whose names carry no media id are not
    Darkroom's and stay. Files in `uploads/` are kept while an upload row names them (an
    upload being stored has its row within moments, well inside the grace). Folders are read
    in batches, so memory stays small on a large store. Returns how many files were removed.
    """
    grace = float(current_app.config["ORPHAN_FILE_GRACE_SECONDS"])  # 0 or more: check_settings
    cutoff = (time.time() if now is None else now) - grace
    removed = 0
    for folder, model in SWEPT_FOLDERS.items():
        live = live_ids if model is Media else None
        found: dict[str, list[str]] = {}
        for media_id, path in _old_files(media_root() / folder, cutoff):
            found.setdefault(media_id, []).append(path)
            if len(found) >= batch:
                removed += _remove_unnamed(found, live, model)
                found = {}
        removed += _remove_unnamed(found, live, model)
    if removed:
        log.info("storage: removed %d files no media row names", removed)
    return removed


def _old_files(folder: Path, cutoff: float) -> Iterator[tuple[str, str]]:
    """(media id, path) of the regular files in `folder` last written before `cutoff`."""
    try:
        entries = os.scandir(folder)
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("storage sweep: cannot read %s: %s", folder, exc)
        return
    with entries:
        for entry in entries:
            media_id = _media_id_of(entry.name)
            if media_id is None:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
            except OSError:
                continue
            yield media_id, entry.path


def _remove_unnamed(
    found: dict[str, list[str]],
    live_ids: Callable[[], set[str]] | None,
    model: type[Media] | type[Upload] = Media,
) -> int:
    """Remove the files of `found` whose id is neither a row of `model` nor a live attempt's."""
    if not found:
        return 0
    keep = live_ids() if live_ids else set()
    keep |= set(db.session.scalars(select(model.id).where(model.id.in_(list(found)))))
    db.session.rollback()  # no read transaction stays open while files are removed
    removed = 0
    for media_id, paths in found.items():
        if media_id in keep:
            continue
        for path in paths:
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
            except OSError:
                log.warning("could not remove orphan file %s", path, exc_info=True)
    return removed


def remove_stored(media_id: str) -> bool:
    """Delete whatever is stored under a media id (picture, thumbnail, unfinished writes).

    For files that no media row names (an attempt cut off before it recorded them); False
    when nothing was there.
    """
    root = media_root()
    found = [
        path
        for folder in STORAGE_FOLDERS
        for pattern in (f"{media_id}.*", f".{media_id}.*.part")
        for path in (root / folder).glob(pattern)
    ]
    for path in found:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only disk: the storage sweep retries later
            log.warning("could not remove %s: %s", path.name, exc.strerror or exc)
    return bool(found)


def get_media(media_id: str, owner: str | None = None) -> Media:
    """Fetch a media row or raise `MediaNotFound`; with an `owner`, another user's media
    item is not found either."""
    media = db.session.get(Media, media_id)
    if media is None or (owner is not None and media.job.owner_id != owner):
        raise MediaNotFound(media_id)
    return media


def get_live_media(media_id: str, owner: str | None = None) -> Media:
    """Fetch a media row whose file may still be served; raise `MediaExpired` once expired."""
    media = get_media(media_id, owner)
    if media.is_expired(now_utc()):
        raise MediaExpired(media_id)
    return media


def purge_expired(now: datetime | None = None, batch: int = 500) -> int:
    """Remove the files of media past retention; keep the rows, marked, so URLs answer 410."""
    now = now or now_utc()
    days = float(current_app.config["RETENTION_DAYS"])
    due = Media.expires_at <= now
    if days > 0:
        # Also honours a retention shortened after the media were made.
        due = or_(due, Media.created_at <= now - timedelta(days=days))
    purged = 0
    while True:
        rows = db.session.execute(
            select(Media.id, Media.storage_path, Media.thumbnail_path)
            .where(Media.purged_at.is_(None), due)
            .limit(batch)
        ).all()
        if not rows:
            return purged
        with write_transaction():
            db.session.execute(
                update(Media)
                .where(Media.id.in_([r.id for r in rows]), Media.purged_at.is_(None))
                .values(purged_at=now)
                .execution_options(synchronize_session=False)
            )
        # Files go after the commit: a row is never left pointing at a file already gone
        # while it still claims to be servable.
        for row in rows:
            remove_files(row.storage_path, row.thumbnail_path)
        purged += len(rows)
        log.info("retention: purged %d media files", len(rows))


def delete_media(media_id: str, owner: str | None = None) -> None:
    """Delete a media row, then its file and thumbnail."""
    with write_transaction():
        media = get_media(media_id, owner)
        paths = (media.storage_path, media.thumbnail_path)
        db.session.delete(media)
    # Files go after the commit: a failed commit must not leave a row without its file.
    remove_files(*paths)
