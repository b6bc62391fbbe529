"""Browser security: CSRF, cross-site API writes, Content-Security-Policy, the secret key."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

from webapp.auth import register_auth, session_reaches_api_media
from webapp.paths import is_machine_path
from webapp.ratelimit import view_method

csrf = CSRFProtect()

# No inline script or style and no eval anywhere in the pages: htmx is configured for it.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI sets style attributes as it renders; its scripts still come only from us.
DOCS_POLICY = PAGE_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

DEV_SECRET = "dev-only-change-me"

JSON = "application/json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods that change something: the API refuses them from other sites' pages."""

JSON_BODY_MARK = "_darkroom_json_body"


def takes_json_body(fn: Any) -> Any:
    """Mark an API view method whose body is JSON: other Content-Types get 415.

    A browser sends `text/plain`, form and multipart bodies to any site without asking it
    first (CORS "simple" requests); `application/json` it sends only after the site agreed
    in a preflight, which Darkroom never gives another site.
    """
    setattr(fn, JSON_BODY_MARK, True)
    return fn


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _own_origins() -> set[str]:
    """Where Darkroom's own pages are served from: as this request reached us, and as
    configured (`DARKROOM_PUBLIC_URL`, the address behind a proxy)."""
    origins = {_origin(request.host_url)}
    public = str(current_app.config.get("PUBLIC_URL") or "")
    if public:
        origins.add(_origin(public))
    return origins


def cross_site_reason() -> str | None:
    """Why this request came from another site's page, or None if it did not.

    Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`) and pages cannot
    forge either; scripts and curl send neither, so they are never refused here.
    """
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "it was sent by another site's page"
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in _own_origins():
        return f"its Origin {origin[:100]!r} is not this service's"
    return None


def guard_api_write() -> Response | None:
    """Refuse an API write from another site's page (403) or with a non-JSON body (415)."""
    from webapp.errors import json_error

    if not is_machine_path(request.path) or request.method not in WRITE_METHODS:
        return None
    reason = cross_site_reason()
    if reason:
        return json_error(403, {"detail": f"Cross-site request refused: {reason}"})
    answering = view_method(current_app.view_functions.get(request.endpoint or ""), request.method)
    if getattr(answering, JSON_BODY_MARK, False) and request.mimetype != JSON:
        sent = request.mimetype or "none"
        return json_error(
            415, {"detail": f"Content-Type must be {JSON} (this request sent: {sent[:100]})"}
        )
    return None


def refuse_nul() -> Response | None:
    """No NUL character reaches a query: PostgreSQL refuses one in text, and no client has a
    reason to send it. An API path holding one names nothing (404, as any unknown id); a
    page request with one in its path, query or form is a 400. (The API's query values are
    validated where they are read.)"""
    from flask import render_template

    from webapp.errors import json_error

    if is_machine_path(request.path):
        if "\x00" in request.path:
            return json_error(404, {"detail": "Not found"})
        return None
    form = request.form if request.mimetype == "application/x-www-form-urlencoded" else {}
    values = [request.path, *request.args.keys(), *request.args.values()]
    values += [*form.keys(), *form.values()]
    if not any("\x00" in value for value in values):
        return None
    detail = "The request holds a NUL character"
    return Response(render_template("error.html", status=400, detail=detail), 400)


def ensure_secret_key(app: Flask) -> None:
    """Without a configured SECRET_KEY, make one once and keep it in the instance folder."""
    if app.config.get("SECRET_KEY") not in (None, "", DEV_SECRET):
        return
    path = Path(app.instance_path) / "secret_key"
    try:
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        app.config["SECRET_KEY"] = path.read_text().strip()
    except OSError:
        app.logger.warning("could not keep a secret key in %s; using a per-process one", path)
        app.config["SECRET_KEY"] = secrets.token_urlsafe(48)


class PagesSessionInterface(SecureCookieSessionInterface):
    """The signed cookie session (it holds the CSRF token), opened for the pages only.

    The API is token-less JSON (or takes a bearer key) and never reads a session; opening
    one builds a signing serializer and checks the cookie on every request, 7% of a status
    read. The one exception: with accounts on, a media download may be an `<img>` of the
    signed-in user's own pictures.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if is_machine_path(request.path) and not session_reaches_api_media():
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_samesite(self, app: Flask) -> str | None:
        """Lax unless configured: the cookie goes along only when people follow a link here."""
        return app.config.get("SESSION_COOKIE_SAMESITE") or "Lax"

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure whenever the page was served over HTTPS (behind a proxy: as it says)."""
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Save the session, except in the answer to a write from another site's page.

        The browser sends no `Lax` cookie with such a post, so the session here is empty;
        its refusal page would set a fresh one, which the browser keeps in place of the
        real one: another site could sign people out, or spoil the CSRF token of their open
        tabs, with one hidden form.
        """
        if request.method in WRITE_METHODS and cross_site_reason():
            return
        super().save_session(app, session, response)


def register_security(app: Flask, api_blueprints: list) -> None:
    """CSRF on every form and htmx request (not on the token-less JSON API); security headers."""
    ensure_secret_key(app)
    app.session_interface = PagesSessionInterface()
    # A token is signed afresh with every page; it holds for a day, so a tab left open
    # overnight still works and a leaked token soon stops working.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 24 * 3600)
    csrf.init_app(app)
    for blueprint in api_blueprints:
        csrf.exempt(blueprint)  # token-less: guard_api_write keeps other sites out instead
    app.before_request(refuse_nul)
    app.before_request(guard_api_write)
    register_auth(app)  # after the cross-site check, before the rate limits count

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            docs = request.path.startswith("/api/v1/docs")
            response.headers["Content-Security-Policy"] = DOCS_POLICY if docs else PAGE_POLICY
        return response
