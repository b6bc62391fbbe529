"""Browser security: CSRF protection, Content-Security-Policy and framing, the secret key."""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

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

    The API is token-less JSON and never reads a session; opening one builds a signing
    serializer and checks the cookie on every request, 7% of a status read.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith("/api/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def register_security(app: Flask, api_blueprints: list) -> None:
    """CSRF on every form and htmx request (not on the token-less JSON API); security headers."""
    ensure_secret_key(app)
    app.session_interface = PagesSessionInterface()
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # a tab left open overnight still works
    csrf.init_app(app)
    for blueprint in api_blueprints:
        csrf.exempt(blueprint)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            docs = request.path.startswith("/api/v1/docs")
            response.headers["Content-Security-Policy"] = DOCS_POLICY if docs else PAGE_POLICY
        return response
