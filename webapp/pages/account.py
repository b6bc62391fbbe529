"""Account pages (accounts on): the first administrator, sign-in and out, Settings (password,
API keys, share links, and for administrators the users), and the public share pages.

With accounts off only the open-mode notice lives here (its dismissal and its help page).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from webapp import accounts, auth, jobs, urls
from webapp import media as storage
from webapp.api.media import send_media, send_thumbnail
from webapp.config import PROJECT_ROOT, auth_enabled
from webapp.htmx import render, wants_partial
from webapp.models import ShareLink, User
from webapp.ratelimit import client_ip

bp = Blueprint("account", __name__)
bp.add_app_template_global(urls.absolute, "absolute")

NOTICE_COOKIE = "darkroom_open_notice"
SIGNIN_FAILURES = 5  # per minute, per account and per address
SIGNIN_WINDOW = 60
EXPIRY_CHOICES = (("", "Never"), ("1", "1 day"), ("7", "7 days"), ("30", "30 days"),
                  ("90", "90 days"), ("365", "1 year"))  # fmt: skip

# Pages anyone may open with accounts on: creating the first administrator, signing in,
# shared links, the open-mode help.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "account.setup",
        "account.signin",
        "account.shared",
        "account.shared_media",
        "account.shared_thumbnail",
        "account.accounts_help",
    }
)


def accounts_on() -> bool:
    """Whether `DARKROOM_AUTH=on`."""
    return auth_enabled(current_app.config)


def viewer() -> User | None:
    """The signed-in user of this page request (accounts on), or None."""
    who = auth.principal()
    return accounts.get_user(who.user_id) if who and not who.via_key else None


def _go(target: str, status: int = 303) -> BaseResponse:
    """Navigate there: a redirect, or for htmx an `HX-Redirect` it follows as a whole page."""
    if request.headers.get("HX-Request") == "true":
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, status)


def require_account() -> BaseResponse | None:
    """Before every page (accounts on): the first page creates the administrator; after
    that, people sign in before they see anything but the public pages."""
    if not accounts_on() or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not accounts.any_user():
        return _go(url_for("account.setup"))
    if auth.principal() is None:
        here = request.full_path if request.method == "GET" else "/"
        return _go(url_for("account.signin", next=here.rstrip("?")))
    return None


@bp.app_context_processor
def account_context() -> dict[str, Any]:
    """What the page frame shows: the signed-in user, or the open-mode notice."""
    on = accounts_on()
    return {
        "accounts_on": on,
        "viewer": viewer() if on else None,
        "open_notice": not on and request.cookies.get(NOTICE_COOKIE) != "dismissed",
    }


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on this site."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/"):
        return url_for("pages.index")
    if target.startswith("//") or "\\" in target or any(c < " " or c == "\x7f" for c in target):
        return url_for("pages.index")
    return target


# -- the open-mode notice -----------------------------------------------------------------


@bp.post("/notice/dismiss")
def dismiss_notice() -> BaseResponse:
    """Hide the open-mode notice in this browser (for a year)."""
    response: BaseResponse = Response(status=200) if wants_partial() else redirect("/", 303)
    response.set_cookie(
        NOTICE_COOKIE, "dismissed", max_age=365 * 86400, httponly=True, samesite="Lax"
    )
    return response


_README_SECTION = re.compile(r"^## Accounts and API keys\n(.*?)(?=^## )", re.S | re.M)


@bp.get("/help/accounts")
def accounts_help() -> Response:
    """The README's section on turning accounts on, served here (no network needed)."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    match = _README_SECTION.search(text)
    section = match.group(1).strip() if match else "See README.md: Accounts and API keys."
    return render("account/help.html", section=section)


# -- the first administrator, signing in and out -------------------------------------------


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> BaseResponse:
    """Create the administrator account (only while there is no account at all)."""
    if not accounts_on():
        abort(404)
    if accounts.any_user():
        return redirect(url_for("account.signin"), 303)
    error, name = None, ""
    if request.method == "POST":
        name = request.form.get("name", "")
        password = request.form.get("password", "")
        if password != request.form.get("password2", ""):
            error = "The two passwords differ"
        else:
            try:
                user = accounts.create_user(name, password, admin=True)
            except accounts.AccountError as exc:
                error = str(exc)
            else:
                auth.sign_in(user)
                return redirect(url_for("pages.index"), 303)
    return render("account/setup.html", 422 if error else 200, error=error, name=name)


def _throttle_keys(name: str) -> tuple[str, ...]:
    return (
        f"darkroom/signin/name/{name.strip().lower()[:64]}",
        f"darkroom/signin/ip/{client_ip()}",
    )


def _take_attempt(name: str) -> int:
    """Count a sign-in attempt for the name and the address before the password is checked
    (parallel attempts cannot slip past the count); the seconds to wait when either has
    had 5 failures this minute, else 0. A success gives its attempt back (`_give_back`)."""
    store = current_app.extensions["darkroom_rate_limits"].storage
    wait = 0.0
    try:
        for key in _throttle_keys(name):
            if store.incr(key, SIGNIN_WINDOW) > SIGNIN_FAILURES:
                wait = max(wait, store.get_expiry(key) - time.time(), 1)
    except store.base_exceptions:
        current_app.logger.warning("sign-in throttle storage failed; not throttling")
        return 0
    return max(0, math.ceil(wait))


def _give_back(name: str) -> None:
    store = current_app.extensions["darkroom_rate_limits"].storage
    try:
        for key in _throttle_keys(name):
            store.incr(key, SIGNIN_WINDOW, amount=-1)
    except store.base_exceptions:
        pass


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> BaseResponse:
    """Sign in with name and password; 5 failures a minute (per name or address) wait."""
    if not accounts_on():
        abort(404)
    if not accounts.any_user():
        return redirect(url_for("account.setup"), 303)
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if auth.principal() is not None:
            return redirect(target, 303)
        return render("account/signin.html", next=target, name="", error=None)
    name = request.form.get("name", "")[:200]
    wait = _take_attempt(name)
    if wait:
        response = render(
            "account/signin.html",
            429,
            next=target,
            name=name,
            error=f"Too many failed sign-ins. Try again in {wait} seconds.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = accounts.authenticate(name, request.form.get("password", ""))
    if user is None:
        current_app.logger.info("sign-in failed for a name from %s", client_ip())
        return render(
            "account/signin.html", 401, next=target, name=name, error="Wrong name or password"
        )
    _give_back(name)
    auth.sign_in(user)
    return redirect(target, 303)


@bp.post("/signout")
def signout() -> BaseResponse:
    """Sign out (every session of the account ends)."""
    auth.sign_out(viewer())
    return redirect(url_for("account.signin") if accounts_on() else "/", 303)


# -- Settings -------------------------------------------------------------------------------


def _settings(status: int = 200, **extra: Any) -> Response:
    user = viewer()
    if user is None:
        abort(404)
    context: dict[str, Any] = {
        "user": user,
        "keys": accounts.keys_of(user),
        "shares": accounts.shares_of(user),
        "scopes": [s for s in accounts.SCOPES if s != "admin" or user.is_admin],
        "expiry_choices": EXPIRY_CHOICES,
        "users": accounts.list_users() if user.is_admin else [],
        "default_quota": int(current_app.config["DAILY_JOB_QUOTA"]),
        "new_key": None,
        "message": None,
        "error": None,
        **extra,
    }
    return render("account/settings.html", status, **context)


@bp.get("/settings")
def settings() -> Response:
    """Your account, API keys, share links; for administrators, the users."""
    if not accounts_on():
        abort(404)
    return _settings()


_WHOLE = re.compile(r"[0-9]{1,7}")


def _whole(value: str | None, what: str) -> int | None:
    """A form's whole number (ASCII digits, a few of them), None when empty."""
    value = (value or "").strip()
    if not value:
        return None
    if not _WHOLE.fullmatch(value):
        raise accounts.AccountError(f"{what} is a whole number")
    return int(value)


def _days(value: str | None) -> int | None:
    return _whole(value, "Expiry in days")


@bp.post("/settings/password")
def change_password() -> Response:
    """Change one's own password (the current one is asked for); other sessions end."""
    user = viewer()
    if user is None:
        abort(404)
    if accounts.authenticate(user.name, request.form.get("current", "")) is None:
        return _settings(422, error="The current password is wrong")
    if request.form.get("password") != request.form.get("password2"):
        return _settings(422, error="The two new passwords differ")
    try:
        accounts.set_password(user, request.form.get("password", ""))
    except accounts.AccountError as exc:
        return _settings(422, error=str(exc))
    auth.sign_in(user)  # this session goes on, with the new epoch
    return _settings(message="Password changed")


@bp.post("/settings/keys")
def create_key() -> Response:
    """Make an API key; it is shown this once."""
    user = viewer()
    if user is None:
        abort(404)
    try:
        row, key = accounts.create_key(
            user,
            request.form.get("name", ""),
            request.form.getlist("scope"),
            _days(request.form.get("expires_days")),
        )
    except accounts.AccountError as exc:
        return _settings(422, error=str(exc))
    response = _settings(201, new_key=key, message=f"Key {row.prefix} created")
    response.headers["Cache-Control"] = "no-store"  # the key itself is on this page
    return response


@bp.post("/settings/keys/<key_id>/revoke")
def revoke_key(key_id: str) -> Response:
    """Revoke one of one's keys."""
    user = viewer()
    if user is None:
        abort(404)
    try:
        key = accounts.revoke_key(key_id, user)
    except accounts.AccountError:
        abort(404)
    return _settings(message=f"Key {key.prefix} revoked")


# -- administration ---------------------------------------------------------------------------


def _admin() -> User:
    user = viewer()
    if user is None or not user.is_admin:
        abort(404)
    return user


def _target(user_id: str) -> User:
    user = accounts.get_user(user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/settings/users")
def add_user() -> Response:
    """An administrator adds a user."""
    _admin()
    try:
        added = accounts.create_user(
            request.form.get("name", ""),
            request.form.get("password", ""),
            admin=request.form.get("admin") == "1",
        )
    except accounts.AccountError as exc:
        return _settings(422, error=str(exc))
    return _settings(201, message=f"User {added.name} added")


@bp.post("/settings/users/<user_id>")
def change_user(user_id: str) -> Response:
    """An administrator resets a password, disables or enables, grants or removes
    administration, or sets the daily quota of a user."""
    _admin()
    target = _target(user_id)
    action = request.form.get("action", "")
    try:
        if action == "password":
            accounts.set_password(target, request.form.get("password", ""))
            message = f"Password of {target.name} reset"
        elif action in ("disable", "enable"):
            accounts.set_disabled(target, action == "disable")
            message = f"{target.name} {action}d"
        elif action in ("make_admin", "remove_admin"):
            accounts.set_admin(target, action == "make_admin")
            message = (
                f"{target.name} is {'now' if target.is_admin else 'no longer'} an administrator"
            )
        elif action == "quota":
            accounts.set_quota(target, _whole(request.form.get("quota"), "A quota"))
            message = f"Quota of {target.name} set"
        else:
            raise accounts.AccountError("Unknown action")
    except accounts.AccountError as exc:
        return _settings(422, error=str(exc))
    return _settings(message=message)


# -- share links ----------------------------------------------------------------------------


@bp.post("/jobs/<job_id>/share")
def create_share(job_id: str) -> BaseResponse:
    """The owner makes a public link to a job."""
    user = viewer()
    if user is None:
        abort(404)
    job = jobs.get_job(job_id, auth.owner_filter())
    try:
        accounts.create_share(job, user, _days(request.form.get("expires_days")))
    except accounts.AccountError as exc:
        abort(422, str(exc))
    return _shares_answer(job_id, user)


@bp.post("/shares/<token>/revoke")
def revoke_share(token: str) -> BaseResponse:
    """Revoke a share link (from the job page or Settings)."""
    user = viewer()
    if user is None:
        abort(404)
    try:
        accounts.revoke_share(token, user)
    except accounts.AccountError:
        abort(404)
    job_id = request.form.get("job_id")
    if job_id:
        return _shares_answer(job_id, user)
    return redirect(url_for("account.settings"), 303)


def _shares_answer(job_id: str, user: User) -> BaseResponse:
    if not wants_partial():
        return redirect(url_for("pages.job_page", job_id=job_id), 303)
    job = jobs.get_job(job_id, auth.owner_filter())
    return render(
        "partials/shares.html",
        job=job,
        shares=accounts.shares_of(user, job.id),
        expiry_choices=EXPIRY_CHOICES,
    )


def _open_link(token: str) -> ShareLink:
    link = accounts.open_share(token) if accounts_on() else None
    if link is None:
        abort(404, "This link does not exist, or it was revoked or has expired")
    return link


@bp.get("/s/<token>")
def shared(token: str) -> Response:
    """The public page of a shared job: its pictures, prompt and model, nothing else."""
    link = _open_link(token)
    return render("account/shared.html", link=link, job=link.job)


def _shared_item(token: str, media_id: str) -> Any:
    link = _open_link(token)
    item = storage.get_media(media_id)
    if item.job_id != link.job_id:
        abort(404)  # another job's picture, expired or not, is simply not here
    return storage.get_live_media(media_id)


@bp.get("/s/<token>/media/<media_id>")
def shared_media(token: str, media_id: str) -> Response:
    """A picture of a shared job (while the link is open)."""
    return send_media(_shared_item(token, media_id))


@bp.get("/s/<token>/media/<media_id>/thumbnail")
def shared_thumbnail(token: str, media_id: str) -> Response:
    """A thumbnail of a shared job (while the link is open)."""
    return send_thumbnail(_shared_item(token, media_id))


bp.before_request(require_account)
