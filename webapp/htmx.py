"""htmx helpers: its page-wide configuration, and one place that renders for it."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request

# Every page's <meta name="htmx-config">. htmx runs without eval, inline scripts or inline
# styles, so the CSP can stay strict; a 422 swaps in the form with its errors, a 204 swaps
# nothing, and any other 4xx/5xx is an error that leaves the page as it was.
HTMX_CONFIG: dict[str, Any] = {
    "includeIndicatorStyles": False,
    "allowEval": False,
    "allowScriptTags": False,
    "historyCacheSize": 0,
    "refreshOnHistoryMiss": True,
    "selfRequestsOnly": True,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "422", "swap": True},
        {"code": "429", "swap": False, "error": True},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}


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
