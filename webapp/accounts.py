"""Accounts: users and their passwords, API keys, share links, and the daily job quota.

No request in here: the pages, the API's authentication (`webapp.auth`) and the `flask users`
and `flask keys` commands all call these functions.

Passwords are hashed with scrypt (werkzeug's `generate_password_hash`, memory-hard: 32 MiB
per hash), slow on purpose. API keys are 256 random bits, so a guess is hopeless and a fast
hash (SHA-256) is enough: a key is found by its hash in one indexed read per request.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.database import rows_changed, write_transaction
from webapp.extensions import db
from webapp.models import ApiKey, Job, JobQuotaDay, ShareLink, User, now_utc

SCOPES = ("read", "generate", "delete", "admin")
"""What a key may do: `read` (status, lists, media, webhook log, models), `generate` (create
and cancel jobs, send webhooks again), `delete` (delete media), `admin` (all of it, for every
user)."""

KEY_PREFIX = "dr_"
KEY_SHOWN_CHARS = 8  # of the random part, in the prefix people see and revoke by
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # scrypt reads all of it; a megabyte password would cost a CPU second
MAX_NAME = 64
MAX_QUOTA = 1_000_000


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown names against, so that they take as long as known ones (made
    on first use: scrypt takes a sixth of a second, which every process start would pay)."""
    return generate_password_hash("darkroom-no-such-user")


class AccountError(ValueError):
    """A request about accounts that cannot be done as asked; the message says why."""


# -- users ------------------------------------------------------------------------------


def clean_name(name: str) -> str:
    """A user name as stored: trimmed; 1 to 64 letters, digits, `.`, `_`, `-` or `@`."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise AccountError(f"A name has 1 to {MAX_NAME} characters")
    if not all(c.isalnum() or c in "._-@" for c in name) or not name.isascii():
        raise AccountError("A name may hold letters, digits and . _ - @ only")
    return name


def check_password(password: str) -> str:
    """A password fit to keep: 8 to 1024 characters."""
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"A password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"A password has at most {MAX_PASSWORD} characters")
    return password


def new_session_epoch() -> str:
    """A fresh value for `User.session_epoch`: the sessions signed with the old one end."""
    return secrets.token_hex(8)


def any_user() -> bool:
    """Whether any account exists yet (none: the first page creates the administrator)."""
    return db.session.scalar(select(User.id).limit(1)) is not None


def get_user(user_id: str | None) -> User | None:
    """The user with this id, or None."""
    return db.session.get(User, user_id) if user_id else None


def find_user(name: str) -> User | None:
    """The user with this name (exactly as stored), or None."""
    return db.session.scalar(select(User).where(User.name == (name or "").strip()))


def list_users() -> list[User]:
    """Every account, oldest first."""
    return list(db.session.scalars(select(User).order_by(User.created_at, User.name)))


def create_user(name: str, password: str, admin: bool = False) -> User:
    """Add an account; the first administrator also takes over the jobs made before accounts."""
    name = clean_name(name)
    user = User(
        name=name,
        password_hash=generate_password_hash(check_password(password)),
        is_admin=admin,
        disabled=False,
        session_epoch=new_session_epoch(),
        created_at=now_utc(),
    )
    with write_transaction():
        if find_user(name) is not None:
            raise AccountError(f"A user named {name!r} already exists")
        db.session.add(user)
    if admin:
        adopt_ownerless_jobs()
    return user


def authenticate(name: str, password: str) -> User | None:
    """The enabled user with this name and password, or None."""
    user = find_user(name)
    if user is None or len(password or "") > MAX_PASSWORD:
        check_password_hash(_dummy_hash(), password[:MAX_PASSWORD] if password else "")
        return None
    if not check_password_hash(user.password_hash, password) or user.disabled:
        return None
    return user


def set_password(user: User, password: str) -> None:
    """Change a password; the user's other sessions end."""
    with write_transaction():
        user.password_hash = generate_password_hash(check_password(password))
        user.session_epoch = new_session_epoch()


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (sessions and keys stop working) or enable an account."""
    if disabled and user.is_admin and _other_admins(user) == 0:
        raise AccountError("The last administrator cannot be disabled")
    with write_transaction():
        user.disabled = disabled
        user.session_epoch = new_session_epoch()


def set_admin(user: User, admin: bool) -> None:
    """Make a user an administrator, or not (one enabled administrator always remains)."""
    if not admin and user.is_admin and _other_admins(user) == 0:
        raise AccountError("The last administrator cannot stop being one")
    with write_transaction():
        user.is_admin = admin


def set_quota(user: User, quota: int | None) -> None:
    """A user's own daily job quota (None: the default; 0: unlimited)."""
    if quota is not None and not 0 <= quota <= MAX_QUOTA:
        raise AccountError(f"A quota is 0 (unlimited) to {MAX_QUOTA:,} jobs a day")
    with write_transaction():
        user.daily_quota = quota


def _other_admins(user: User) -> int:
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_admin.is_(True), User.disabled.is_(False), User.id != user.id)
        )
        or 0
    )


def first_admin() -> User | None:
    """The oldest enabled administrator."""
    return db.session.scalar(
        select(User)
        .where(User.is_admin.is_(True), User.disabled.is_(False))
        .order_by(User.created_at)
        .limit(1)
    )


def adopt_ownerless_jobs() -> int:
    """Give the jobs made while accounts were off to the first administrator."""
    admin = first_admin()
    if admin is None:
        return 0
    with write_transaction():
        return rows_changed(
            update(Job)
            .where(Job.owner_id.is_(None))
            .values(owner_id=admin.id)
            .execution_options(synchronize_session=False)
        )


# -- the daily quota ----------------------------------------------------------------------


class QuotaUsed(Exception):
    """The user made their daily number of jobs already."""

    def __init__(self, quota: int, resets_at: datetime) -> None:
        super().__init__(quota, resets_at)
        self.quota = quota
        self.resets_at = resets_at

    def __str__(self) -> str:
        return f"Daily quota of {self.quota} jobs used; resets at {self.resets_at:%H:%M} UTC"


def quota_of(user: User) -> int:
    """Jobs this user may make per UTC day (0: unlimited)."""
    if user.daily_quota is not None:
        return user.daily_quota
    return int(current_app.config["DAILY_JOB_QUOTA"])


def take_quota(user_id: str, now: datetime) -> None:
    """Count a new job against its owner's UTC day, or raise `QuotaUsed` when the day's
    quota is used. Runs inside the transaction that stores the job, so a job that is not
    stored is not counted, and two at once cannot both take the last place."""
    user = get_user(user_id)
    quota = quota_of(user) if user else 0
    day = now.strftime("%Y-%m-%d")
    this_day = (JobQuotaDay.user_id == user_id, JobQuotaDay.day == day)
    room = (JobQuotaDay.count < quota,) if quota > 0 else ()
    taken = rows_changed(
        update(JobQuotaDay)
        .where(*this_day, *room)
        .values(count=JobQuotaDay.count + 1)
        .execution_options(synchronize_session=False)
    )
    if taken:
        return
    if db.session.scalar(select(JobQuotaDay.count).where(*this_day)) is not None:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        raise QuotaUsed(quota, midnight + timedelta(days=1))
    db.session.add(JobQuotaDay(user_id=user_id, day=day, count=1))
    db.session.flush()  # a first job of the day at once elsewhere: IntegrityError, retried


# -- API keys ---------------------------------------------------------------------------


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def check_scopes(scopes: list[str], user: User) -> list[str]:
    """The scopes in their usual order; unknown ones, none at all, or `admin` for someone
    who is not an administrator, refused."""
    wanted = set(scopes)
    unknown = wanted - set(SCOPES)
    if unknown:
        raise AccountError(f"Unknown scope {sorted(unknown)[0]!r}: one of {', '.join(SCOPES)}")
    if not wanted:
        raise AccountError("A key needs at least one scope")
    if "admin" in wanted and not user.is_admin:
        raise AccountError("Only an administrator can make a key with the 'admin' scope")
    return [s for s in SCOPES if s in wanted]


def create_key(
    user: User, name: str, scopes: list[str], expires_days: int | None = None
) -> tuple[ApiKey, str]:
    """A new key for the user: its row and the key itself (shown once, never stored)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AccountError("A key's name has 1 to 100 characters")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise AccountError("A key expires after 1 to 3650 days")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = now_utc()
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=key[: len(KEY_PREFIX) + KEY_SHOWN_CHARS],
        key_hash=hash_key(key),
        scopes=check_scopes(scopes, user),
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    with write_transaction():
        db.session.add(row)
    return row, key


def keys_of(user: User) -> list[ApiKey]:
    """The user's keys, newest first (revoked ones too)."""
    return list(
        db.session.scalars(
            select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())
        )
    )


def revoke_key(key_id: str, user: User | None = None) -> ApiKey:
    """Revoke a key (of this user, unless None: any key)."""
    key = db.session.get(ApiKey, key_id)
    if key is None or (user is not None and key.user_id != user.id):
        raise AccountError("No such key")
    if key.revoked_at is None:
        with write_transaction():
            key.revoked_at = now_utc()
    return key


def find_keys_by_prefix(prefix: str) -> list[ApiKey]:
    """Keys whose shown prefix starts with (or is the start of) `prefix`: a whole key also
    finds its own row."""
    prefix = (prefix or "").strip()
    if len(prefix) < len(KEY_PREFIX) + 4 or not prefix.startswith(KEY_PREFIX):
        raise AccountError(f"Give the key's prefix as shown, such as {KEY_PREFIX}AbCd1234")
    shown = prefix[: len(KEY_PREFIX) + KEY_SHOWN_CHARS]
    found = list(db.session.scalars(select(ApiKey).where(ApiKey.prefix.startswith(shown))))
    if len(prefix) > len(shown):  # more than the shown part: the whole key
        found = [k for k in found if k.key_hash == hash_key(prefix)]
    return found


# -- share links ------------------------------------------------------------------------


def create_share(job: Job, user: User, expires_days: int | None = None) -> ShareLink:
    """A new public link to a job."""
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise AccountError("A link expires after 1 to 3650 days")
    now = now_utc()
    link = ShareLink(
        id=secrets.token_urlsafe(18),
        job_id=job.id,
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    with write_transaction():
        db.session.add(link)
    return link


def shares_of(user: User, job_id: str | None = None) -> list[ShareLink]:
    """The user's share links (of one job, if given), newest first."""
    stmt = select(ShareLink).where(ShareLink.user_id == user.id)
    if job_id:
        stmt = stmt.where(ShareLink.job_id == job_id)
    return list(db.session.scalars(stmt.order_by(ShareLink.created_at.desc())))


def open_share(token: str) -> ShareLink | None:
    """The link with this token if it is neither revoked nor expired, else None."""
    link = db.session.get(ShareLink, token) if token and len(token) <= 64 else None
    return link if link is not None and link.is_open() else None


def revoke_share(token: str, user: User) -> None:
    """Revoke one of the user's links (an administrator may revoke any)."""
    link = db.session.get(ShareLink, token) if token and len(token) <= 64 else None
    if link is None or (link.user_id != user.id and not user.is_admin):
        raise AccountError("No such link")
    if link.revoked_at is None:
        with write_transaction():
            link.revoked_at = now_utc()
