"""Media endpoints: download, thumbnail, details, delete."""

from __future__ import annotations

from typing import Any

from flask import Response, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.exceptions import PreconditionFailed

from webapp import media as storage
from webapp.api.openapi import errors, header, ref
from webapp.api.schemas import MediaInfoSchema
from webapp.auth import owner_filter, requires
from webapp.models import Media

blp = Blueprint("media", __name__, description="Download and manage generated media")

# Files never change once written (a new picture gets a new id), so caches may keep them.
CACHE_SECONDS = 86400

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ETAG = header("The file's entity tag, for `If-None-Match`", {"type": "string", "minLength": 3})
_FILE_HEADERS = {
    "ETag": _ETAG,
    "Last-Modified": header(
        "When the file was written, for `If-Modified-Since`", {"type": "string"}
    ),
    "Cache-Control": header(
        "`private, max-age=86400`: files never change once written; no shared cache keeps them",
        {"type": "string"},
    ),
    "Accept-Ranges": header("Byte ranges are served", {"type": "string", "const": "bytes"}),
    "Content-Length": header("Bytes in this answer", {"type": "integer", "minimum": 0}),
}


def file_responses(what: str, mime_types: tuple[str, ...]) -> dict[str, Any]:
    """The answers of a file download: whole, a byte range, not modified, bad range."""
    content = {mime: _BINARY for mime in mime_types}
    disposition = header(
        "`inline`, with the file's name", {"type": "string", "pattern": "^inline; filename="}
    )
    detail = {"application/json": {"schema": ref("DetailError")}}
    return {
        "200": {
            "description": what,
            "content": content,
            "headers": {"Content-Disposition": disposition, **_FILE_HEADERS},
        },
        "206": {
            "description": "The byte range asked for with `Range` (one range)",
            "content": content,
            "headers": {
                "Content-Range": header(
                    "Which bytes of how many", {"type": "string", "pattern": r"^bytes \d+-\d+/\d+$"}
                ),
                **_FILE_HEADERS,
            },
        },
        "304": {
            "description": "Not modified since `If-None-Match` or `If-Modified-Since`",
            "headers": {"ETag": _ETAG},
        },
        "412": {
            "description": "`If-Match` names another version of the file",
            "content": detail,
        },
        "416": {
            "description": "The `Range` cannot be served: past the end, several ranges, or "
            "malformed",
            "content": detail,
            "headers": {
                "Content-Range": header(
                    "The file's length", {"type": "string", "pattern": r"^bytes \*/\d+$"}
                )
            },
        },
    }


def send_stored(
    relative: str, mimetype: str, download_name: str, etag: str, download: bool
) -> Response:
    """Stream a stored file with ETag, Last-Modified and Range support."""
    try:
        response = send_file(
            storage.resolve(relative),
            mimetype=mimetype,
            download_name=download_name,
            as_attachment=download,
            conditional=True,
            etag=etag,
            max_age=CACHE_SECONDS,
        )
    except FileNotFoundError as exc:
        raise storage.MediaNotFound(relative) from exc
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The browser may keep a file (it never changes), shared caches may not: once accounts
    # exist, a proxy must not hand one user's picture to another.
    response.cache_control.public = False
    response.cache_control.private = True
    return response


def send_media(item: Media, download: bool = False) -> Response:
    """The media file, named by its id (never by user input)."""
    name = f"{item.id}{item.file_extension}"
    return send_stored(item.storage_path, item.mime_type, name, item.sha256, download)


def send_thumbnail(item: Media) -> Response:
    """The media item's WebP thumbnail."""
    if not item.thumbnail_path:
        raise storage.MediaNotFound(item.id)
    name = f"{item.id}-thumbnail.webp"
    return send_stored(item.thumbnail_path, "image/webp", name, f"t-{item.sha256}", False)


def conditional(response: Response) -> Response:
    """The file answer, or our JSON error when the client's `If-Match` failed.

    Werkzeug marks a failed `If-Match` with status 412 but keeps the whole file as its body.
    """
    if response.status_code == 412:
        response.close()
        raise PreconditionFailed("If-Match does not match the file's current ETag")
    return response


@blp.route("/media/<string:media_id>")
class MediaById(MethodView):
    """One media item's file."""

    @blp.doc(responses=file_responses("The file", tuple(f[1] for f in storage.FORMATS.values())))
    @errors(blp, 404, 410)
    @requires("read")
    def get(self, media_id: str) -> Response:
        """Download the file (supports ETag and Range)"""
        return conditional(send_media(storage.get_live_media(media_id, owner_filter())))

    @blp.response(204)
    @errors(blp, 404)
    @requires("delete")
    def delete(self, media_id: str) -> None:
        """Delete the file, its thumbnail and its record"""
        storage.delete_media(media_id, owner_filter())


@blp.route("/media/<string:media_id>/thumbnail")
class MediaThumbnail(MethodView):
    """One media item's thumbnail."""

    @blp.doc(responses=file_responses("A WebP thumbnail, longest side 512", ("image/webp",)))
    @errors(blp, 404, 410)
    @requires("read")
    def get(self, media_id: str) -> Response:
        """Download the WebP thumbnail (supports ETag and Range)"""
        return conditional(send_thumbnail(storage.get_live_media(media_id, owner_filter())))


@blp.route("/media/<string:media_id>/info")
class MediaInfo(MethodView):
    """One media item's details."""

    @blp.response(200, MediaInfoSchema)
    @errors(blp, 404, 410)
    @requires("read")
    def get(self, media_id: str) -> Media:
        """Get the details of a media item"""
        return storage.get_live_media(media_id, owner_filter())
