"""htmx helpers: one place decides between a partial and a full page."""

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


def render(
    full_template: str, partial_template: str, status: int = 200, **context: Any
) -> Response:
    """Render the partial for htmx, the full page otherwise; caches must tell them apart."""
    template = partial_template if wants_partial() else full_template
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def fragment(template: str, status: int = 200, **context: Any) -> Response:
    """Render a partial that is only ever asked for by htmx."""
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
