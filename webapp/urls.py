"""Public URLs of resources, built from `DARKROOM_PUBLIC_URL` (no request needed).

With accounts on, media and upload URLs carry an expiring signature (`webapp.auth.signed`).
"""

from __future__ import annotations

from flask import current_app

from webapp.auth import signed
from webapp.paths import API_PREFIX, FACADE_PREFIX

__all__ = ["API_PREFIX", "FACADE_PREFIX"]


def public_base() -> str:
    """The absolute base URL clients reach us at."""
    configured = str(current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    return configured or f"http://localhost:{current_app.config['PORT']}"


def absolute(path: str) -> str:
    """Make a site path absolute."""
    return public_base() + path


def job_status_path(job_id: str) -> str:
    """Where a job's status is read."""
    return f"{API_PREFIX}/jobs/status/{job_id}"


def media_url(media_id: str) -> str:
    """A media file's absolute URL (signed with accounts on: it works with no key)."""
    return public_base() + signed(media_path(media_id))


def thumbnail_url(media_id: str) -> str:
    """A thumbnail's absolute URL (signed with accounts on)."""
    return public_base() + signed(thumbnail_path(media_id))


def media_path(media_id: str) -> str:
    """Where a media file is downloaded."""
    return f"{API_PREFIX}/media/{media_id}"


def upload_url(upload_id: str) -> str:
    """An uploaded picture's absolute URL (signed with accounts on)."""
    return public_base() + signed(upload_path(upload_id))


def upload_path(upload_id: str) -> str:
    """Where an uploaded picture is downloaded."""
    return f"{API_PREFIX}/uploads/{upload_id}"


def thumbnail_path(media_id: str) -> str:
    """Where a media item's thumbnail is downloaded."""
    return f"{API_PREFIX}/media/{media_id}/thumbnail"
