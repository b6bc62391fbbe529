"""htmx helpers: whether a request wants a fragment, and one way to render for htmx."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request


def wants_partial() -> bool:
    """An htmx request for a fragment (not a boosted navigation or a history restore)."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and headers.get("HX-Boosted") != "true"
        and headers.get("HX-History-Restore-Request") != "true"
    )


def render(template: str, status: int = 200, **context: Any) -> Response:
    """Render a page or a partial; the URL may answer htmx and a browser differently."""
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
