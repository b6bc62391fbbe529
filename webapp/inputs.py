"""Pictures a job takes as inputs: chosen at submission, kept while jobs use them, read by
the worker.

A job's `image` and `mask` parameters each name a picture in one of three ways: an upload
id, the id of a media item of an earlier job (copied into an upload, so deleting that media
item later leaves the job's input alone), or a `data:image/...;base64,` URI (stored as an
upload, exactly as if it had been sent to `POST /uploads`). Whatever the form, the job keeps
the upload's id: in its parameters, in the status body's `inputs`, and in `job_inputs`.

An upload a job uses lives as long as the job's media (`RETENTION_DAYS`). Deleting a job
gives the uploads no other job uses the time an unused upload has (24 hours from when it
was sent), so they go with the next sweep once that has passed.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from flask import current_app
from PIL import Image
from sqlalchemy import delete, exists, insert, select, update

from webapp.extensions import db
from webapp.media import MediaExpired, MediaNotFound, get_live_media, resolve
from webapp.models import NEVER, JobInput, Upload
from webapp.providers.base import ModelSpec, PermanentProviderError
from webapp.providers.mapping import INPUT_ROLES
from webapp.uploads import (
    UPLOAD_LIFETIME,
    UploadNotFound,
    UploadTooLarge,
    create_upload,
    get_upload,
    read_limited,
)
from webapp.validation import RequestInvalid, error_item

ROLES = INPUT_ROLES
"""The parameters that name pictures, in the order the status body lists them."""

_DATA_URI = re.compile(r"data:image/(?:png|jpeg|jpg|webp)(?:;[a-z0-9=._-]*)*?;base64,", re.I)
_ECHO = 80  # characters of a refused reference echoed back (a data URI can be megabytes)


class InputMissing(PermanentProviderError):
    """A picture the job takes was deleted before the job ran."""

    def __init__(self, role: str, upload_id: str) -> None:
        super().__init__(
            f"The input {role} (upload {upload_id}) was deleted before the job ran; "
            "submit the job again with the picture",
            details={"role": role, "upload_id": upload_id},
        )


@dataclass(frozen=True)
class InputPicture:
    """One input as the worker hands it to a provider: the stored bytes and their shape.

    A mask is always a grayscale PNG of the image's size (white: may change; black: keep).
    """

    role: str
    upload_id: str
    data: bytes
    mime_type: str
    width: int
    height: int

    def image(self) -> Image.Image:
        """The decoded picture (grayscale for a mask)."""
        picture = Image.open(io.BytesIO(self.data))
        picture.load()
        return picture

    def data_uri(self) -> str:
        """The bytes as a `data:` URI."""
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


# -- at submission -----------------------------------------------------------------------


def _loc(role: str) -> list[str | int]:
    return ["body", "parameters", role]


def _echo(reference: str) -> str:
    return reference if len(reference) <= _ECHO else reference[: _ECHO - 1] + "…"


def _refused(kind: str, role: str, msg: str, reference: str | None) -> RequestInvalid:
    return RequestInvalid([error_item(kind, _loc(role), msg, reference and _echo(reference))])


def check_inputs(spec: ModelSpec, requested: dict[str, Any]) -> None:
    """Refuse pictures the model cannot use (a picture must never be silently ignored), the
    absence of one it cannot run without, and a mask without an image; `RequestInvalid`
    (422) lists every such problem."""
    problems = []
    for role in ROLES:
        if role in requested and role not in spec.inputs:
            takes = f"it takes: {', '.join(spec.inputs)}" if spec.inputs else "it takes no pictures"
            problems.append(
                error_item(
                    "input_unsupported",
                    _loc(role),
                    f"The {spec.id} model cannot use {'a mask' if role == 'mask' else 'an image'}"
                    f" ({takes}); choose a model that lists it in `inputs`",
                    _echo(str(requested[role])),
                )
            )
    for role in spec.required_inputs:
        if role not in requested:
            problems.append(
                error_item(
                    "input_required",
                    _loc(role),
                    f"The {spec.id} model needs {'a mask' if role == 'mask' else 'an image'}: "
                    f"send `{role}`",
                    None,
                )
            )
    if "mask" in requested and "image" not in requested:
        problems.append(
            error_item(
                "mask_without_image",
                _loc("mask"),
                "A mask needs an image to apply to: send `image` too",
                _echo(str(requested["mask"])),
            )
        )
    if problems:
        raise RequestInvalid(problems)


def choose_inputs(requested: dict[str, Any], owner_id: str | None) -> dict[str, Upload]:
    """The upload each picture parameter names (stored first for a data URI or a media
    item), by role; `RequestInvalid` (422) naming the parameter for one that cannot be used.
    Call `check_inputs` first."""
    return {
        role: _upload_for(role, str(requested[role]), owner_id)
        for role in ROLES
        if role in requested
    }


def _upload_for(role: str, reference: str, owner_id: str | None) -> Upload:
    if _DATA_URI.match(reference):
        return store_picture(role, _decode_data_uri(role, reference), owner_id)
    if not _is_id(reference):
        raise _refused(
            "input_invalid",
            role,
            "Should be an upload id, the id of a media item, or a data:image/...;base64, URI "
            "of a PNG, JPEG or WebP picture",
            reference,
        )
    try:
        upload = get_upload(reference, owner_id)
    except UploadNotFound:
        return _from_media(role, reference, owner_id)
    if upload.is_expired():
        raise _refused(
            "input_expired", role, "The upload has expired; upload the picture again", reference
        )
    return upload


def _is_id(reference: str) -> bool:
    try:
        return str(uuid.UUID(reference)) == reference
    except ValueError:
        return False


def _decode_data_uri(role: str, reference: str) -> bytes:
    limit = int(current_app.config["MAX_UPLOAD_BYTES"])
    payload = reference[reference.index(",") + 1 :]
    if len(payload) > (limit + 2) // 3 * 4 + 4:  # decoded, it could only be too large
        raise _too_large(role, limit)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refused(
            "data_uri_invalid", role, "The data URI's base64 text is not valid", reference
        ) from exc
    if len(data) > limit:
        raise _too_large(role, limit)
    return data


def _too_large(role: str, limit: int) -> RequestInvalid:
    return _refused(
        "image_too_large", role, f"The picture is larger than the limit of {limit} bytes", None
    )


def store_picture(role: str, data: bytes | IO[bytes], owner_id: str | None) -> Upload:
    """Store a sent picture (bytes, or a file read up to the upload limit) as an upload,
    its problems named by the parameter it fills."""
    try:
        if not isinstance(data, bytes):
            data = read_limited(data, int(current_app.config["MAX_UPLOAD_BYTES"]))
        return create_upload(data, owner_id)
    except UploadTooLarge as exc:
        raise _too_large(role, int(current_app.config["MAX_UPLOAD_BYTES"])) from exc
    except RequestInvalid as exc:
        for item in exc.errors:
            item["loc"] = _loc(role)
        raise


def _from_media(role: str, media_id: str, owner_id: str | None) -> Upload:
    """A media item of an earlier job, copied into an upload of the job's owner."""
    try:
        media = get_live_media(media_id, owner_id)
        data = resolve(media.storage_path).read_bytes()
    except (MediaNotFound, OSError) as exc:
        raise _refused(
            "input_not_found", role, "No upload or media item has this id", media_id
        ) from exc
    except MediaExpired as exc:
        raise _refused(
            "input_expired",
            role,
            "The media item's file was removed by the retention period",
            media_id,
        ) from exc
    return store_picture(role, data, owner_id)


def size_from_image(spec: ModelSpec, image: Upload) -> dict[str, int]:
    """The width and height a job renders at when it only gave an image: the image's own,
    scaled into the model's bounds with its shape kept."""
    bounds = spec.param("width")
    if bounds is None or spec.param("height") is None:
        return {}
    low, high = int(bounds.minimum or 128), int(bounds.maximum or 2048)
    width, height = image.width, image.height
    scale = min(1.0, high / max(width, height))
    scale = max(scale, low / min(width, height))
    return {
        "width": max(low, min(high, round(width * scale))),
        "height": max(low, min(high, round(height * scale))),
    }


def input_expiry(now: datetime) -> datetime:
    """Until when a job submitted now keeps its inputs: its media's retention."""
    days = float(current_app.config["RETENTION_DAYS"])
    return now + timedelta(days=days) if days > 0 else NEVER


def record_inputs(job_id: str, chosen: dict[str, Upload], now: datetime) -> None:
    """Inside the job's insert transaction: note which upload plays which role, and keep
    each one as long as the job's media; `RequestInvalid` if one was deleted meanwhile."""
    if not chosen:
        return
    conn = db.session.connection()
    ids = [upload.id for upload in chosen.values()]
    present = set(conn.scalars(select(Upload.id).where(Upload.id.in_(ids))))
    for role, upload in chosen.items():
        if upload.id not in present:
            raise _refused("input_not_found", role, "The upload was deleted meanwhile", upload.id)
    conn.execute(
        insert(JobInput),
        [{"job_id": job_id, "role": role, "upload_id": u.id} for role, u in chosen.items()],
    )
    until = input_expiry(now)
    conn.execute(
        update(Upload).where(Upload.id.in_(ids), Upload.expires_at < until).values(expires_at=until)
    )


def input_items(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, upload id) of each picture a job takes, from its stored parameters."""
    return [(role, str(parameters[role])) for role in ROLES if parameters.get(role)]


def release_inputs(job_id: str, now: datetime) -> list[str]:
    """Inside a job's delete transaction: forget its inputs, and give the uploads no other
    job uses the time an unused upload has. Returns the files of those already past it
    (their rows are deleted here; remove the files after the commit)."""
    used = list(db.session.scalars(select(JobInput.upload_id).where(JobInput.job_id == job_id)))
    if not used:
        return []
    db.session.execute(delete(JobInput).where(JobInput.job_id == job_id))
    still_used = exists().where(JobInput.upload_id == Upload.id)
    free = list(db.session.scalars(select(Upload).where(Upload.id.in_(used), ~still_used)))
    paths = []
    for upload in free:
        unused_until = upload.created_at + UPLOAD_LIFETIME
        if unused_until <= now:
            paths.append(upload.storage_path)
            db.session.delete(upload)
        else:
            upload.expires_at = min(upload.expires_at, unused_until)
    return paths


# -- in the worker -----------------------------------------------------------------------


def load_inputs(job_id: str) -> dict[str, InputPicture]:
    """The job's input pictures by role, read from storage; `InputMissing` for one deleted
    since the job was submitted. A mask comes as a grayscale PNG of the image's size."""
    rows = db.session.execute(
        select(JobInput.role, JobInput.upload_id, Upload)
        .outerjoin(Upload, Upload.id == JobInput.upload_id)
        .where(JobInput.job_id == job_id)
    ).all()
    found: dict[str, InputPicture] = {}
    for role, upload_id, upload in rows:
        if upload is None:
            raise InputMissing(role, upload_id)
        try:
            data = resolve(upload.storage_path).read_bytes()
        except (MediaNotFound, OSError) as exc:
            raise InputMissing(role, upload_id) from exc
        found[role] = InputPicture(
            role, upload_id, data, upload.mime_type, upload.width, upload.height
        )
    if "mask" in found and "image" in found:
        found["mask"] = _as_mask(found["mask"], found["image"])
    return found


def _as_mask(mask: InputPicture, image: InputPicture) -> InputPicture:
    """The mask in grayscale at the image's size (a mask of another size is scaled)."""
    picture = mask.image()
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        # Painted strokes on a transparent sheet: where nothing was painted stays black.
        sheet = Image.new("RGB", picture.size, (0, 0, 0))
        sheet.paste(picture.convert("RGBA"), mask=picture.convert("RGBA").getchannel("A"))
        picture = sheet
    gray = picture.convert("L")
    if gray.size != (image.width, image.height):
        gray = gray.resize((image.width, image.height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    gray.save(buffer, "PNG")
    return InputPicture(
        "mask", mask.upload_id, buffer.getvalue(), "image/png", image.width, image.height
    )
