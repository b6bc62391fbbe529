"""Media endpoints: download, thumbnail, details, delete."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from webapp import media as storage
from webapp.api.jobs import errors
from webapp.api.schemas import MediaInfoSchema
from webapp.models import Media

blp = Blueprint("media", __name__, description="Download and manage generated media")

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
        return storage.send_media(storage.get_live_media(media_id))

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
        return storage.send_thumbnail(storage.get_live_media(media_id))


@blp.route("/media/<string:media_id>/info")
class MediaInfo(MethodView):
    """One media item's details."""

    @blp.response(200, MediaInfoSchema)
    @errors(404, 410)
    def get(self, media_id: str) -> Media:
        """Get the details of a media item"""
        return storage.get_live_media(media_id)
