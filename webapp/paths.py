"""Where the machine-facing parts of the site live: the API of the guide (`/api/v1`) and the
face that speaks OpenAI's Images API (`/v1`). Both answer JSON, take no session or CSRF
token, and refuse other sites' pages; each answers errors in its own shape."""

from __future__ import annotations

API_PREFIX = "/api/v1"
FACADE_PREFIX = "/v1"
_MACHINE = ("/api/", f"{FACADE_PREFIX}/")


def is_machine_path(path: str) -> bool:
    """A path of the API or of the OpenAI face (JSON errors, bearer keys, no session)."""
    return path.startswith(_MACHINE)


def is_facade_path(path: str) -> bool:
    """A path of the OpenAI face (errors in OpenAI's shape)."""
    return path.startswith(f"{FACADE_PREFIX}/")
