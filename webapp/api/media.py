"""Media endpoints: download, thumbnail, details, delete."""

from __future__ import annotations

from flask import Response, send_file
from flask.views import MethodView
from flask_smorest import Blueprint

from webapp import media as storage
from webapp.api.jobs import errors
from webapp.api.schemas import MediaInfoSchema
from webapp.models import Media

blp = Blueprint("media", __name__, description="Download and manage generated media")

# Files never change once written (a new picture gets a new id), so caches may keep them.
CACHE_SECONDS = 86400


def _send(relative: str, mimetype: str, download_name: str, etag: str) -> Response:
    """Stream a stored file with conditional and range support."""
    try:
        path = storage.resolve(relative)
        response = send_file(
            path,
            mimetype=mimetype,
            download_name=download_name,
            as_attachment=False,
            conditional=True,
            etag=etag,
            max_age=CACHE_SECONDS,
        )
    except FileNotFoundError as exc:
        raise storage.MediaNotFound(relative) from exc
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


IMAGE = {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}


@blp.route("/media/<string:media_id>")
class MediaById(MethodView):
    """One media item's file."""

    @blp.doc(
        responses={
            "200": {"description": "The file", **IMAGE},
            "206": {"description": "A byte range"},
            "304": {"description": "Not modified"},
        }
    )
    @errors(404, 410)
    def get(self, media_id: str) -> Response:
        """Download the file (supports ETag and Range)"""
        item = storage.get_live_media(media_id)
        return _send(
            item.storage_path, item.mime_type, f"{item.id}{item.file_extension}", item.sha256
        )

    @blp.response(204)
    @errors(404)
    def delete(self, media_id: str) -> None:
        """Delete the file, its thumbnail and its record"""
        storage.delete_media(media_id)


@blp.route("/media/<string:media_id>/thumbnail")
class MediaThumbnail(MethodView):
    """One media item's thumbnail."""

    @blp.doc(
        responses={
            "200": {"description": "A WebP thumbnail, longest side 512", **IMAGE},
            "304": {"description": "Not modified"},
        }
    )
    @errors(404, 410)
    def get(self, media_id: str) -> Response:
        """Download the WebP thumbnail"""
        item = storage.get_live_media(media_id)
        if not item.thumbnail_path:
            raise storage.MediaNotFound(media_id)
        return _send(
            item.thumbnail_path, "image/webp", f"{item.id}-thumbnail.webp", f"t-{item.sha256}"
        )


@blp.route("/media/<string:media_id>/info")
class MediaInfo(MethodView):
    """One media item's details."""

    @blp.response(200, MediaInfoSchema)
    @errors(404, 410)
    def get(self, media_id: str) -> Media:
        """Get the details of a media item"""
        return storage.get_live_media(media_id)
