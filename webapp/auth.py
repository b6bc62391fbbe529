"""Who is asking, with accounts on (`DARKROOM_AUTH=on`): API keys, the pages' session, the
scope each API operation needs, whose work a request may see, and signed media URLs.

With accounts off nothing here runs: every request is answered as before, and every helper
that narrows what a request sees answers "everyone's".

One `before_request` (`identify`) runs ahead of the rate limits, so that limits count per
user: an API request names its key (`Authorization: Bearer dr_…`, one indexed read), a page
request its signed session cookie. The API answers 401 without a usable key and 403 for a
key that lacks the operation's scope; the pages send people to sign in (`webapp.pages`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request, session
from sqlalchemy import update

from webapp.accounts import find_user, hash_key
from webapp.config import auth_enabled
from webapp.database import write_transaction
from webapp.extensions import db
from webapp.models import ApiKey, User, now_utc
from webapp.paths import is_machine_path
from webapp.ratelimit import SUBJECT_KEY, view_method

F = TypeVar("F", bound=Callable[..., Any])

_SCOPE_MARK = "_darkroom_scope"
OPEN = "open"
"""An operation anyone may call, accounts or not (health, the OpenAPI document)."""

# flask-smorest's document and docs page, and Swagger UI's files: always open.
OPEN_BLUEPRINTS = ("api-docs", "docs_assets")

_PRINCIPAL = "darkroom.principal"
_SIGNED = "darkroom.signed_media"
SIGNED_MEDIA_ENDPOINTS = frozenset(
    {"media.MediaById", "media.MediaThumbnail", "uploads.UploadById"}
)
"""API downloads (media, thumbnails, uploads) a signed URL may fetch with no key or cookie."""


def signed_download(endpoint: str, method: str) -> bool:
    """Whether a signed URL may stand in for a key here: downloads only (GET and HEAD); a
    signed URL never deletes anything."""
    return endpoint in SIGNED_MEDIA_ENDPOINTS and method.upper() in ("GET", "HEAD")


LAST_USED_EVERY = timedelta(minutes=1)  # a key's `last_used_at` is written at most this often


def requires(scope: str) -> Callable[[F], F]:
    """Declare the scope an API view method needs (`read`, `generate`, `delete`, `admin`) or
    `OPEN`. A method with none declared needs `admin`; the mark travels with the function."""

    def mark(fn: F) -> F:
        setattr(fn, _SCOPE_MARK, scope)
        return fn

    return mark


def scope_of(view: Any, method: str) -> str:
    """The scope an endpoint's method needs (`admin` when none is declared)."""
    return str(getattr(view_method(view, method), _SCOPE_MARK, None) or "admin")


@dataclass(frozen=True)
class Principal:
    """The user behind a request, and what this request may do."""

    user_id: str
    name: str
    scopes: frozenset[str]
    sees_everyone: bool  # an administrator's session, or a key with the `admin` scope
    via_key: bool


def principal() -> Principal | None:
    """Who made this request (None with accounts off, or nobody signed in)."""
    value = request.environ.get(_PRINCIPAL)
    return value if isinstance(value, Principal) else None


def _set_principal(who: Principal) -> None:
    request.environ[_PRINCIPAL] = who
    request.environ[SUBJECT_KEY] = f"user:{who.user_id}"


NOBODY = "-"
"""An owner id no row has: what a request that names no user may see with accounts on."""


def owner_filter() -> str | None:
    """Whose work this request may see: None for everyone's (accounts off, an administrator,
    a key with the `admin` scope, a signed media URL), else the user's id."""
    if not auth_enabled(current_app.config) or request.environ.get(_SIGNED):
        return None
    who = principal()
    if who is None:
        return NOBODY
    return None if who.sees_everyone else who.user_id


def user_filter(name: str | None) -> str | None:
    """`owner_filter`, which someone who sees everyone's work may narrow to one user's."""
    owner = owner_filter()
    if owner is not None or not name or not auth_enabled(current_app.config):
        return owner
    user = find_user(name) if len(name) <= 64 and "\x00" not in name else None
    return user.id if user else NOBODY


def current_user_id() -> str | None:
    """The user a new job, link or key belongs to (None with accounts off)."""
    who = principal()
    return who.user_id if who else None


# -- sessions (the pages) -----------------------------------------------------------------

SESSION_USER = "uid"
SESSION_EPOCH = "epoch"


def sign_in(user: User) -> None:
    """Start a fresh session for the user: a new cookie and a new CSRF token."""
    session.clear()  # nothing from before sign-in (its CSRF token included) carries over
    g.pop("csrf_token", None)  # Flask-WTF's copy for this app context: a new one is made
    session[SESSION_USER] = user.id
    session[SESSION_EPOCH] = user.session_epoch
    session.permanent = True


def sign_out(user: User | None) -> None:
    """End the session, and every other session of the account: a session cookie is
    stateless, so a copy of it (a shared computer, a stolen cookie) would otherwise outlive
    the sign-out."""
    session.clear()
    g.pop("csrf_token", None)
    if user is not None:
        end_sessions(user)


def end_sessions(user: User) -> None:
    """Make every session cookie of the user stop working."""
    from webapp.accounts import new_session_epoch

    with write_transaction():
        user.session_epoch = new_session_epoch()


def session_user() -> User | None:
    """The enabled user whose session this is, if it is still current."""
    user_id = session.get(SESSION_USER)
    if not user_id:
        return None
    user = db.session.get(User, user_id)
    if user is None or user.disabled or session.get(SESSION_EPOCH) != user.session_epoch:
        return None
    return user


def _session_principal(user: User) -> Principal:
    scopes = {"read", "generate", "delete"} | ({"admin"} if user.is_admin else set())
    return Principal(user.id, user.name, frozenset(scopes), user.is_admin, via_key=False)


# -- API keys ---------------------------------------------------------------------------

# One indexed read per request, on the driver's own cursor: through SQLAlchemy's execution
# and result machinery the same SELECT cost 0.24 ms, a fifth of a whole status read (the
# request scripts poll); on the pool's raw connection it costs 0.02 ms. The columns
# come back as the driver gives them; `_key_values` reads them on SQLite and PostgreSQL.
_KEY_SQL = (
    "SELECT k.id, k.scopes, k.expires_at, k.revoked_at, k.last_used_at, "
    "u.id, u.name, u.is_admin, u.disabled "
    "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = {}"
)


def _stamp(value: Any) -> datetime | None:
    """A stored UTC timestamp as the driver returns it (SQLite: text), as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_readers: dict[tuple[int, str], tuple[threading.Lock, sqlite3.Connection]] = {}
_readers_lock = threading.Lock()


def _sqlite_key_row(database: str, key_hash: str) -> Any:
    """`_KEY_SQL` on the process's own read-only connection to a SQLite file.

    Taking a connection from the pool and giving it back (with its reset) cost more than the
    indexed SELECT itself. SQLite runs a lone SELECT in its own snapshot of the last commit,
    so a revoked key is seen at once. One connection per process and file (a forked worker
    opens its own), used under a lock: the SELECT never yields to another greenlet, so
    under gevent the lock is never waited for, and threads take turns for microseconds.
    """
    found = _readers.get((os.getpid(), database))
    if found is None:
        with _readers_lock:
            found = _readers.get((os.getpid(), database))
            if found is None:
                conn = sqlite3.connect(
                    database, timeout=15, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA query_only=ON")
                found = _readers[(os.getpid(), database)] = (threading.Lock(), conn)
    lock, conn = found
    with lock:
        return conn.execute(_KEY_SQL.format("?"), (key_hash,)).fetchone()


def _key_row(key_hash: str) -> tuple[Any, ...] | None:
    """The key's and its user's columns (see `_KEY_SQL`), or None."""
    engine = db.engine
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        row = _sqlite_key_row(database, key_hash)
        return tuple(row) if row is not None else None
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    conn = engine.raw_connection()  # the pool's connection, without a Connection around it
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(_KEY_SQL.format(marker), (key_hash,))
            row = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        conn.close()  # back to the pool (which rolls back whatever the read began)
    return tuple(row) if row is not None else None


def bearer_key() -> str | None:
    """The key of `Authorization: Bearer <key>`, if the header says so."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def key_principal(key: str) -> Principal | None:
    """The principal of a usable key (one indexed read), or None."""
    if len(key) > 200:
        return None
    row = _key_row(hash_key(key))
    if row is None:
        return None
    key_id, stored_scopes, expires, revoked, last_used, user_id, name, is_admin, disabled = row
    now = now_utc()
    expires_at, last_used_at = _stamp(expires), _stamp(last_used)
    if disabled or revoked is not None or (expires_at is not None and expires_at <= now):
        return None
    if last_used_at is None or now - last_used_at >= LAST_USED_EVERY:
        with write_transaction():
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
    if isinstance(stored_scopes, str):  # SQLite keeps JSON as text
        stored_scopes = json.loads(stored_scopes)
    scopes = frozenset(stored_scopes or ())
    if "admin" in scopes and not is_admin:  # the user stopped being an administrator
        scopes = scopes - {"admin"}
    return Principal(str(user_id), str(name), scopes, "admin" in scopes, via_key=True)


# -- signed media URLs --------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _signing_key(secret: str) -> bytes:
    """The HMAC key of media URLs, derived from SECRET_KEY (and only usable for them)."""
    return hashlib.sha256(b"darkroom signed media urls\0" + secret.encode()).digest()


def _signature(path: str, expires: int) -> str:
    return _mac(_signing_key(str(current_app.config["SECRET_KEY"])), path, expires)


@functools.lru_cache(maxsize=4096)
def _mac(key: bytes, path: str, expires: int) -> str:
    """The signature itself; the same URL is signed again and again while its expiry step
    lasts (every status read of a job signs its pictures' URLs), so it is kept."""
    mac = hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def signed(path: str, lifetime: float | None = None) -> str:
    """`path` with `?expires=…&signature=…` when accounts are on; unchanged when off.

    The expiry is rounded down to a step of 1/24 of the lifetime (at most an hour), so a
    picture keeps one URL for a while and the browser's cache serves it.
    """
    config = current_app.config
    if not auth_enabled(config):
        return path
    seconds = float(lifetime or config["SIGNED_URL_SECONDS"])
    step = max(1, min(3600, int(seconds // 24)))
    expires = int((time.time() + seconds) // step * step)
    # Both values are URL-safe as they are (digits; base64url without padding).
    return f"{path}?expires={expires}&signature={_signature(path, expires)}"


def signature_problem() -> str | None:
    """Why this request's media signature does not hold, or None when it does."""
    try:
        expires = int(request.args.get("expires", ""))
    except ValueError:
        return "This media URL's signature is not valid"
    sent = request.args.get("signature", "")
    if not hmac.compare_digest(sent.encode(), _signature(request.path, expires).encode()):
        return "This media URL's signature is not valid"
    if expires <= time.time():
        return "This media URL has expired"
    return None


# -- the check before each request ----------------------------------------------------------


def _api_refusal() -> Response | None:
    """401, 403, or None (let it through) for an API request with accounts on."""
    from webapp.errors import json_error

    endpoint = request.endpoint or ""
    view = current_app.view_functions.get(endpoint)
    if view is None or request.method == "OPTIONS":
        return None  # 404 and 405 as usual; OPTIONS names the methods, nothing more
    if endpoint.split(".", 1)[0] in OPEN_BLUEPRINTS:
        return None
    needed = scope_of(view, request.method)
    if needed == OPEN:
        return None
    key = bearer_key()
    if (
        key is None
        and signed_download(endpoint, request.method)
        and ("signature" in request.args or "expires" in request.args)
    ):
        problem = signature_problem()
        if problem:
            return json_error(403, {"detail": problem})
        request.environ[_SIGNED] = True
        return None
    who = key_principal(key) if key else None
    if who is None and key is None and signed_download(endpoint, request.method):
        user = session_user()  # an <img> on the user's own pages
        who = _session_principal(user) if user else None
    if who is None:
        response = json_error(401, {"detail": "Not authenticated"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="darkroom"'
        return response
    _set_principal(who)
    if needed not in who.scopes and "admin" not in who.scopes:
        return json_error(403, {"detail": f"This API key lacks the '{needed}' scope"})
    return None


def identify() -> Response | None:
    """Find who is asking (accounts on); refuse API requests that may not go on."""
    if not auth_enabled(current_app.config):
        return None
    if is_machine_path(request.path):
        return _api_refusal()
    if request.endpoint == "static":
        return None
    user = session_user()
    if user is not None:
        _set_principal(_session_principal(user))
    return None


def session_reaches_api_media() -> bool:
    """Whether this request may carry the pages' session to the API: a media (or upload)
    download with accounts on and no key (the gallery's `<img>` of the user's own work)."""
    return (
        request.path.startswith(("/api/v1/media/", "/api/v1/uploads/"))
        and request.method in ("GET", "HEAD")
        and "Authorization" not in request.headers
        and auth_enabled(current_app.config)
    )


def register_auth(app: Flask) -> None:
    """Check every request's key or session (before the rate limits count it)."""
    app.before_request(identify)
    if auth_enabled(app.config):
        # A signed-in browser stays signed in for two weeks (Flask's default is 31 days).
        if app.config.get("PERMANENT_SESSION_LIFETIME") == timedelta(days=31):
            app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=14)
        app.config["SESSION_COOKIE_HTTPONLY"] = True
        _adopt_ownerless_jobs(app)


def _adopt_ownerless_jobs(app: Flask) -> None:
    """Accounts switched (back) on: jobs made while they were off go to the first
    administrator, as at the first administrator's creation."""
    from sqlalchemy.exc import SQLAlchemyError

    from webapp.accounts import adopt_ownerless_jobs

    with app.app_context():
        try:
            taken = adopt_ownerless_jobs()
        except SQLAlchemyError as exc:  # a schema not upgraded yet: `flask db upgrade` first
            app.logger.warning("could not give earlier jobs to an administrator: %s", exc)
            return
        finally:
            db.session.remove()
    if taken:
        app.logger.info("accounts: %d earlier jobs given to the first administrator", taken)


def retry_after_midnight(resets_at: Any) -> int:
    """Seconds until a quota resets."""
    return max(1, math.ceil((resets_at - now_utc()).total_seconds()))
