"""Accounts on the wire (`DARKROOM_AUTH=on`): keys, scopes, ownership, signed media URLs,
the daily quota, per-user rate limits and the headless commands, against the Procfile's real
web and worker processes. Users and keys are made with `flask users|keys` as an operator
would, once per stack; a stack with accounts off checks the old open behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from PIL import Image

from tests.procs import API, TERMINAL, Stack, running_stack
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e

T = TypeVar("T")

STEP_SECONDS = 0.02  # the demo model's pace per step in these stacks' workers
SMALL = {"width": 128, "height": 128, "num_inference_steps": 1}
SLOW = {"width": 128, "height": 128, "num_inference_steps": 50}  # about a second of running
PASSWORD = "correct horse battery staple"
KEY = re.compile(r"dr_[A-Za-z0-9_-]{43}")
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Endpoint:
    """An API operation: its method, its path as the OpenAPI document names it (under
    /api/v1), the scope it needs and what it answers when let through."""

    method: str
    path: str
    scope: str
    success: int

    @property
    def takes_an_id(self) -> bool:
        return "{" in self.path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


PROTECTED = (
    Endpoint("POST", "/jobs/generate", "generate", 201),
    Endpoint("GET", "/jobs", "read", 200),
    Endpoint("GET", "/jobs/status/{job_id}", "read", 200),
    Endpoint("DELETE", "/jobs/{job_id}", "generate", 204),
    Endpoint("GET", "/jobs/{job_id}/webhooks", "read", 200),
    Endpoint("POST", "/jobs/{job_id}/webhooks/redeliver", "generate", 202),
    Endpoint("GET", "/media/{media_id}", "read", 200),
    Endpoint("GET", "/media/{media_id}/thumbnail", "read", 200),
    Endpoint("GET", "/media/{media_id}/info", "read", 200),
    Endpoint("DELETE", "/media/{media_id}", "delete", 204),
    Endpoint("POST", "/uploads", "generate", 201),
    Endpoint("GET", "/uploads/{upload_id}", "read", 200),
    Endpoint("GET", "/uploads/{upload_id}/info", "read", 200),
    Endpoint("DELETE", "/uploads/{upload_id}", "delete", 204),
    Endpoint("GET", "/models", "read", 200),
)
"""Every operation of the API that needs a key."""

OPEN_PATHS = ("/health", "/health/live", "/health/ready", "/openapi.json", "/docs")
DOCUMENTED_OPEN = ("/health", "/health/live", "/health/ready")  # the others are the document
SIGNED_DOWNLOADS = ("/media/{media_id}", "/media/{media_id}/thumbnail", "/uploads/{upload_id}")


# -- HTTP --------------------------------------------------------------------------------


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(
    stack: Stack,
    method: str,
    path: str,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """One request with no session (so no cookie): `path` under /api/v1, a site path, or an
    absolute URL; `key` as a bearer key."""
    sent = {**(headers or {}), **(bearer(key) if key is not None else {})}
    if not path.startswith(("http://", "/api/")):
        path = API + path
    return requests.request(
        method, stack.url(path), headers=sent, timeout=10, allow_redirects=False, **kwargs
    )


def submit(
    stack: Stack, key: str | None, prompt: str, parameters: dict = SMALL, **extra: Any
) -> str:
    """Submit a job (with a key, if given); its id."""
    body = {"prompt": prompt, "parameters": parameters, **extra}
    response = call(stack, "POST", "/jobs/generate", key, json=body)
    assert response.status_code == 201, (response.status_code, response.text)
    return str(response.json()["id"])


def picture(side: int = 16) -> bytes:
    """A small real PNG to upload (each side gives other bytes, so another upload)."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), "navy").save(buffer, "PNG")
    return buffer.getvalue()


def upload(stack: Stack, key: str | None, side: int = 16) -> str:
    """Upload a picture with a key; its id."""
    files = {"file": ("picture.png", picture(side))}
    response = call(stack, "POST", "/uploads", key, files=files)
    assert response.status_code == 201, (response.status_code, response.text)
    return str(response.json()["id"])


def finished(stack: Stack, key: str | None, job_id: str) -> dict[str, Any]:
    """Poll a job's status until it ends; its (completed) status body."""

    def ended() -> dict[str, Any] | None:
        response = call(stack, "GET", f"/jobs/status/{job_id}", key)
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        return body if body["status"] in TERMINAL else None

    body = stack.wait_until(f"job {job_id} to end", ended, timeout=30, interval=0.02)
    assert body["status"] == "completed", body
    return body


def completed_in_database(stack: Stack, job_id: str) -> None:
    """Wait until a job is completed, reading the database (no rate-limited status reads)."""
    stack.wait_until(
        f"job {job_id} to complete",
        lambda: stack.db_rows("SELECT status FROM jobs WHERE id = ?", job_id) == [("completed",)],
        timeout=30,
    )


def listed(stack: Stack, key: str | None, **args: str) -> tuple[set[str], int]:
    """Every job id of the listing (all pages) and its `total`."""
    ids: set[str] = set()
    page = 1
    while True:
        query = urlencode({**args, "page": page, "per_page": 100})
        response = call(stack, "GET", f"/jobs?{query}", key)
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        ids |= {job["id"] for job in body["jobs"]}
        if not body["has_next"]:
            return ids, int(body["total"])
        page += 1


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def assert_not_authenticated(response: requests.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.json() == {
        "detail": "Not authenticated",
        "request_id": response.headers["X-Request-ID"],
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **query: str) -> str:
    """The URL's scheme, host and path with this query instead of its own."""
    parts = urlsplit(url)
    return parts._replace(query=urlencode(query)).geturl()


# -- the headless commands ----------------------------------------------------------------


def flask(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`flask --app wsgi ...` with the stack's settings."""
    return stack.flask(*args, stdin=stdin)


def flask_ok(stack: Stack, *args: str, stdin: str = "") -> str:
    done = flask(stack, *args, stdin=stdin)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def add_user(stack: Stack, name: str, admin: bool = False) -> str:
    return flask_ok(
        stack, "users", "create", name, *(["--admin"] if admin else []), stdin=f"{PASSWORD}\n"
    )


def add_key(stack: Stack, user: str, *scopes: str, expires_days: int | None = None) -> str:
    """`keys create`; its whole output (the key is its last line)."""
    args = ["keys", "create", "--user", user, "--name", f"{user}: {' '.join(scopes)}"]
    for scope in scopes:
        args += ["--scope", scope]
    if expires_days is not None:
        args += ["--expires-days", str(expires_days)]
    return flask_ok(stack, *args)


def key_of(output: str) -> str:
    """The key `keys create` printed alone on its last line."""
    key = output.splitlines()[-1]
    assert KEY.fullmatch(key), output
    return key


def provision(
    stack: Stack, users: list[tuple[str, bool]], keys: list[tuple[str, tuple[str, ...], int | None]]
) -> list[str]:
    """Users (with this module's password) and keys, in one process (`Stack.provision`)."""
    return stack.provision(users, keys, PASSWORD)


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run the calls in threads (each starts a process that mostly imports the app)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


# -- the stack with accounts on -------------------------------------------------------------

KEYS = {
    # role: (user, scopes, expires_days)
    "alice": ("alice", ("read", "generate", "delete"), None),
    "read-only": ("alice", ("read",), None),
    "no-read": ("alice", ("generate", "delete"), None),
    "revoked": ("alice", ("read", "generate", "delete"), None),
    "expired": ("alice", ("read", "generate", "delete"), 1),
    "bob": ("bob", ("read", "generate", "delete"), None),
    "admin": ("root", ("admin",), None),
}


BY_COMMAND = ("admin", "expired")
"""The keys made with `flask keys create` (the others with `provision`)."""


@dataclass
class Site:
    """The accounts-on stack with its users' keys and alice's finished job (two pictures,
    a webhook delivered to `hook`)."""

    stack: Stack
    hook: Receiver
    keys: dict[str, str]
    key_outputs: dict[str, str]
    revoked: subprocess.CompletedProcess[str]
    job_id: str
    media_ids: list[str]
    upload_id: str

    def delivered(self, job_id: str) -> None:
        """Wait until the job's webhook event is delivered (so it may be sent again)."""
        self.stack.wait_until(
            "the webhook to be delivered",
            lambda: (
                self.stack.db_rows("SELECT status FROM webhook_events WHERE job_id = ?", job_id)
                == [("delivered",)]
            ),
        )


def expire(stack: Stack, key: str) -> None:
    """Test set-up: the key expired yesterday (a key is made to last a day at least)."""
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    digest = hashlib.sha256(key.encode()).hexdigest()
    sql = "UPDATE api_keys SET expires_at = ? WHERE key_hash = ?"
    with closing(sqlite3.connect(stack.instance / "darkroom.db", timeout=15)) as db, db:
        assert db.execute(sql, (past, digest)).rowcount == 1


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, hook: Receiver) -> Iterator[Site]:
    env = {"DARKROOM_AUTH": "on", "DARKROOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    folder = tmp_path_factory.mktemp("auth")
    with running_stack(folder, step_seconds=STEP_SECONDS, env=env) as stack:
        # The administrator and one key through the commands, as an operator makes them;
        # the rest in one process (`provision`).
        add_user(stack, "root", admin=True)
        others = {role: spec for role, spec in KEYS.items() if role not in BY_COMMAND}
        made = provision(stack, [("alice", False), ("bob", False)], list(others.values()))
        outputs = at_once(
            *(
                lambda u=KEYS[r][0], s=KEYS[r][1], d=KEYS[r][2]: add_key(
                    stack, u, *s, expires_days=d
                )
                for r in BY_COMMAND
            )
        )
        key_outputs = {
            **dict(zip(others, made, strict=True)),
            **dict(zip(BY_COMMAND, outputs, strict=True)),
        }
        keys = {role: key_of(output) for role, output in key_outputs.items()}
        for role in ("revoked", "expired"):  # both work until they are revoked or expire
            assert call(stack, "GET", "/models", keys[role]).status_code == 200
        revoked = flask(stack, "keys", "revoke", keys["revoked"][:11])
        assert revoked.returncode == 0, (revoked.stdout, revoked.stderr)
        expire(stack, keys["expired"])
        job_id = submit(
            stack,
            keys["alice"],
            "two lanterns on a quay",
            {**SMALL, "num_outputs": 2},
            webhook_url=hook.url("/hook"),
        )
        body = finished(stack, keys["alice"], job_id)
        made = Site(
            stack,
            hook,
            keys,
            key_outputs,
            revoked,
            job_id,
            [m["id"] for m in body["media"]],
            upload(stack, keys["alice"]),
        )
        made.delivered(job_id)
        yield made


@dataclass
class Targets:
    """Alice's things for one request: the shared job and picture, or fresh ones where the
    request would change them (cancel, delete)."""

    site: Site
    active: list[str] = field(default_factory=list)
    uploads: int = 16  # the side of the next fresh upload's picture

    def ids(self, endpoint: Endpoint) -> dict[str, str]:
        site, alice = self.site, self.site.keys["alice"]
        if endpoint.method == "DELETE" and "{job_id}" in endpoint.path:
            job_id = submit(site.stack, alice, "a slow tide", SLOW)
            self.active.append(job_id)
            return {"job_id": job_id}
        if endpoint.method == "DELETE" and "{media_id}" in endpoint.path:
            body = finished(site.stack, alice, submit(site.stack, alice, "a picture to delete"))
            return {"media_id": body["media"][0]["id"]}
        if endpoint.method == "DELETE" and "{upload_id}" in endpoint.path:
            self.uploads += 1
            return {"upload_id": upload(site.stack, alice, self.uploads)}
        if endpoint.path.endswith("/redeliver"):
            site.delivered(site.job_id)  # a delivery on its way cannot be sent again (409)
        return {"job_id": site.job_id, "media_id": site.media_ids[0], "upload_id": site.upload_id}

    def cancel_leftovers(self) -> None:
        for job_id in self.active:
            call(self.site.stack, "DELETE", f"/jobs/{job_id}", self.site.keys["alice"])


@pytest.fixture
def targets(site: Site) -> Iterator[Targets]:
    made = Targets(site)
    yield made
    made.cancel_leftovers()


def request_body(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.path == "/jobs/generate":
        return {"json": {"prompt": "a lighthouse at dusk", "parameters": SMALL}}
    if endpoint.path == "/uploads":
        return {"files": {"file": ("picture.png", picture(12))}}
    return {}


def effect(site: Site, endpoint: Endpoint, ids: dict[str, str]) -> Any:
    """What the request would change, read from the database (a refusal changes nothing)."""
    rows = site.stack.db_rows
    if endpoint.path == "/jobs/generate":
        return rows("SELECT count(*) FROM jobs")
    if endpoint.path == "/uploads":
        return rows("SELECT count(*) FROM uploads")
    if endpoint.path.endswith("/redeliver"):
        sql = "SELECT status, attempt_count FROM webhook_events WHERE job_id = ?"
        return rows(sql, ids["job_id"])
    if endpoint.method == "DELETE" and "{job_id}" in endpoint.path:
        return rows("SELECT status = 'cancelled' FROM jobs WHERE id = ?", ids["job_id"])
    if endpoint.method == "DELETE" and "{upload_id}" in endpoint.path:
        return rows("SELECT count(*) FROM uploads WHERE id = ?", ids["upload_id"])
    if endpoint.method == "DELETE":
        return rows("SELECT count(*) FROM media WHERE id = ?", ids["media_id"])
    return None


NO_USABLE_KEY = (
    "no header",
    "bearer without a key",
    "basic credentials",
    "key without a scheme",
    "key under another scheme",
    "key with more after it",
    "unknown key",
    "revoked key",
    "expired key",
)


def no_usable_key(site: Site, how: str) -> dict[str, str]:
    key = site.keys["alice"]  # valid, but not sent as a bearer key on its own
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    return {
        "no header": {},
        "bearer without a key": {"Authorization": "Bearer"},
        "basic credentials": {"Authorization": f"Basic {basic}"},
        "key without a scheme": {"Authorization": key},
        "key under another scheme": {"Authorization": f"Token {key}"},
        "key with more after it": {"Authorization": f"Bearer {key} {key}"},
        "unknown key": bearer("dr_" + secrets.token_urlsafe(32)),
        "revoked key": bearer(site.keys["revoked"]),
        "expired key": bearer(site.keys["expired"]),
    }[how]


# -- 1. who may call what ----------------------------------------------------------------------


@pytest.mark.parametrize("how", NO_USABLE_KEY)
@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_without_a_usable_key_every_operation_is_401(
    site: Site, targets: Targets, endpoint: Endpoint, how: str
) -> None:
    ids = targets.ids(endpoint)
    before = effect(site, endpoint, ids)
    response = call(
        site.stack,
        endpoint.method,
        endpoint.path.format(**ids),
        headers=no_usable_key(site, how),
        **request_body(endpoint),
    )
    assert_not_authenticated(response)
    assert effect(site, endpoint, ids) == before


@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_a_key_without_the_operations_scope_is_403(
    site: Site, targets: Targets, endpoint: Endpoint
) -> None:
    # alice's own things, with a key of hers that has every scope but the one needed
    key = site.keys["no-read" if endpoint.scope == "read" else "read-only"]
    ids = targets.ids(endpoint)
    before = effect(site, endpoint, ids)
    response = call(
        site.stack, endpoint.method, endpoint.path.format(**ids), key, **request_body(endpoint)
    )
    assert response.status_code == 403, (response.status_code, response.text)
    assert response.json() == {
        "detail": f"This API key lacks the '{endpoint.scope}' scope",
        "request_id": response.headers["X-Request-ID"],
    }
    assert effect(site, endpoint, ids) == before


@pytest.mark.parametrize("endpoint", [e for e in PROTECTED if e.takes_an_id], ids=str)
def test_another_users_id_answers_exactly_like_a_missing_one(
    site: Site, targets: Targets, endpoint: Endpoint
) -> None:
    ids = targets.ids(endpoint)
    before = effect(site, endpoint, ids)
    bob = site.keys["bob"]
    theirs = call(site.stack, endpoint.method, endpoint.path.format(**ids), bob)
    missing_ids = {
        "job_id": str(uuid.uuid4()),
        "media_id": str(uuid.uuid4()),
        "upload_id": str(uuid.uuid4()),
    }
    missing = call(site.stack, endpoint.method, endpoint.path.format(**missing_ids), bob)
    assert theirs.status_code == missing.status_code == 404, (theirs.text, missing.text)
    assert without_request_id(theirs.json()) == without_request_id(missing.json())
    assert theirs.headers["Content-Type"] == missing.headers["Content-Type"]
    assert effect(site, endpoint, ids) == before


@pytest.mark.parametrize("who", ["owner", "owner with just that scope", "admin"])
@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_the_owner_and_an_admin_key_get_through(
    site: Site, targets: Targets, endpoint: Endpoint, who: str
) -> None:
    key = {
        "owner": site.keys["alice"],
        "owner with just that scope": site.keys[
            "read-only" if endpoint.scope == "read" else "no-read"
        ],
        "admin": site.keys["admin"],
    }[who]
    ids = targets.ids(endpoint)
    path = endpoint.path.format(**ids)
    response = call(site.stack, endpoint.method, path, key, **request_body(endpoint))
    assert response.status_code == endpoint.success, (response.status_code, response.text)
    if endpoint.method == "DELETE" and "{job_id}" in endpoint.path:
        assert effect(site, endpoint, ids) == [(1,)], "the job was cancelled"
    elif endpoint.method == "DELETE":
        assert effect(site, endpoint, ids) == [(0,)], "the media item (or upload) is gone"
    elif endpoint.path == "/jobs":
        assert site.job_id in listed(site.stack, key)[0]


@pytest.mark.parametrize("how", ["no header", "unknown key", "revoked key"])
@pytest.mark.parametrize("path", [*OPEN_PATHS, "/docs/assets/index.css"])
def test_open_endpoints_answer_without_a_key(site: Site, path: str, how: str) -> None:
    response = call(site.stack, "GET", path, headers=no_usable_key(site, how))
    assert response.status_code == 200, (response.status_code, response.text[:300])


def test_the_table_covers_every_operation_of_the_api(site: Site) -> None:
    document = call(site.stack, "GET", "/openapi.json").json()
    operations = {
        (method.upper(), path.removeprefix(API))
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    table = {(e.method, e.path) for e in PROTECTED} | {("GET", p) for p in DOCUMENTED_OPEN}
    assert operations == table


@pytest.fixture(scope="module")
def document(site: Site) -> dict[str, Any]:
    response = call(site.stack, "GET", "/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_openapi_document_declares_the_bearer_scheme(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path in DOCUMENTED_OPEN:
        assert document["paths"][API + path]["get"]["security"] == [], path


@pytest.mark.parametrize(
    "endpoint",
    PROTECTED,
    ids=str,
)
def test_the_openapi_document_says_each_operation_needs_a_key(
    document: dict[str, Any], endpoint: Endpoint
) -> None:
    operation = document["paths"][API + endpoint.path][endpoint.method.lower()]
    # A download also works with a signed URL and no key: the bearer key or nothing.
    signed = endpoint.method == "GET" and endpoint.path in SIGNED_DOWNLOADS
    assert operation["security"] == [{"bearerAuth": []}, *([{}] if signed else [])]
    assert {"401", "403"} <= set(operation["responses"])
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


# -- 2. each user sees their own ----------------------------------------------------------


def owned(site: Site, user: str) -> set[str]:
    sql = "SELECT jobs.id FROM jobs JOIN users ON users.id = jobs.owner_id WHERE users.name = ?"
    return {row[0] for row in site.stack.db_rows(sql, user)}


def test_each_list_shows_only_its_owners_jobs(site: Site) -> None:
    stack, alice, bob = site.stack, site.keys["alice"], site.keys["bob"]
    alices = {submit(stack, alice, f"alice's harbour {n}") for n in range(2)}
    bobs = {submit(stack, bob, "bob's meadow")}
    for user, key, made, others in (("alice", alice, alices, bobs), ("bob", bob, bobs, alices)):
        ids, total = listed(stack, key)
        assert ids == owned(site, user) and total == len(ids), user
        assert made <= ids and not others & ids, user
        # A key without the admin scope cannot look at someone else's list.
        other = "bob" if user == "alice" else "alice"
        assert listed(stack, key, user=other) == (ids, total), user
    assert listed(stack, site.keys["read-only"]) == listed(stack, alice)


def test_an_admin_key_lists_everyones_jobs_and_filters_by_user(site: Site) -> None:
    stack, admin = site.stack, site.keys["admin"]
    submit(stack, site.keys["bob"], "bob's orchard")
    everyone = {row[0] for row in stack.db_rows("SELECT id FROM jobs")}
    assert listed(stack, admin) == (everyone, len(everyone))
    for user in ("alice", "bob"):
        mine = owned(site, user)
        assert mine and listed(stack, admin, user=user) == (mine, len(mine)), user
    assert listed(stack, admin, user="nobody-by-that-name") == (set(), 0)


# -- 3. signed media URLs -------------------------------------------------------------------


def assert_signed(url: str, lifetime: int = 86400, issued: float | None = None) -> int:
    """The URL carries `expires` and `signature`: it expires a lifetime after it was issued
    (default: just now), rounded down to a step of lifetime/24 (at most an hour); its expiry."""
    query = query_of(url)
    assert set(query) == {"expires", "signature"}, url
    expires = int(query["expires"])
    step = max(1, min(3600, lifetime // 24))
    now = time.time()
    assert expires % step == 0, url
    assert (issued or now) + lifetime - step - 30 < expires <= now + lifetime, (url, now)
    return expires


def fetch_without_key(stack: Stack, url: str, mime: str) -> bytes:
    response = call(stack, "GET", url)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == mime
    data = response.content
    assert data.startswith(PNG) if mime == "image/png" else data[8:12] == b"WEBP"
    return data


def status_media(site: Site) -> list[dict[str, Any]]:
    return finished(site.stack, site.keys["alice"], site.job_id)["media"]


def test_status_media_urls_are_signed_and_work_without_a_key(site: Site) -> None:
    for item in status_media(site):
        assert_signed(item["url"])
        assert_signed(item["thumbnail_url"])
        data = fetch_without_key(site.stack, item["url"], "image/png")
        assert len(data) == item["file_size_bytes"]
        fetch_without_key(site.stack, item["thumbnail_url"], "image/webp")


def test_info_and_list_media_urls_are_signed_and_work_without_a_key(site: Site) -> None:
    stack, alice = site.stack, site.keys["alice"]
    media_id = site.media_ids[0]
    info = call(stack, "GET", f"/media/{media_id}/info", alice).json()
    assert_signed(info["storage_url"])
    assert_signed(info["thumbnail_url"])
    data = fetch_without_key(stack, info["storage_url"], "image/png")
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    fetch_without_key(stack, info["thumbnail_url"], "image/webp")
    jobs = call(stack, "GET", "/jobs?per_page=100", alice).json()["jobs"]
    [job] = [job for job in jobs if job["id"] == site.job_id]
    for item in job["media"]:
        assert item["url"].startswith(f"{API}/media/{item['id']}?"), item
        assert_signed(item["url"])
        fetch_without_key(stack, item["url"], "image/png")


TAMPERINGS = (
    "signature changed",
    "expires changed",
    "another picture's path",
    "the thumbnail's path",
    "no signature",
    "no expires",
    "expires not a number",
)


def tampered(site: Site, how: str) -> str:
    item, other = status_media(site)
    url = item["url"]
    query = query_of(url)
    signature, expires = query["signature"], query["expires"]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    later = str(int(expires) + 3600)
    return {
        "signature changed": with_query(url, expires=expires, signature=flipped),
        "expires changed": with_query(url, expires=later, signature=signature),
        "another picture's path": with_query(other["url"], **query),
        "the thumbnail's path": with_query(item["thumbnail_url"], **query),
        "no signature": with_query(url, expires=expires),
        "no expires": with_query(url, signature=signature),
        "expires not a number": with_query(url, expires="soon", signature=signature),
    }[how]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_an_altered_signed_url_is_403(site: Site, how: str) -> None:
    response = call(site.stack, "GET", tampered(site, how))
    assert response.status_code == 403, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"detail", "request_id"}
    assert "signature" in body["detail"].lower(), body


@pytest.mark.parametrize("suffix", ["", "/thumbnail"])
def test_an_unsigned_media_url_needs_a_key(site: Site, suffix: str) -> None:
    path = f"/media/{site.media_ids[0]}{suffix}"
    assert_not_authenticated(call(site.stack, "GET", path))
    assert call(site.stack, "GET", path, site.keys["alice"]).status_code == 200


def test_a_signed_url_is_for_downloads_only(site: Site) -> None:
    stack, alice = site.stack, site.keys["alice"]
    body = finished(stack, alice, submit(stack, alice, "a picture someone was sent"))
    [item] = body["media"]
    response = call(stack, "DELETE", item["url"])
    still_there = call(stack, "GET", f"/media/{item['id']}/info", alice).status_code
    assert (response.status_code, still_there) == (401, 200), response.text


def test_the_webhook_media_url_is_signed_and_works_without_a_key(site: Site) -> None:
    first = site.hook.wait_for(1)[0]
    payload = json.loads(first.body)
    assert payload["job_id"] == site.job_id and payload["status"] == "completed"
    assert payload["media_id"] == site.media_ids[0]
    assert urlsplit(payload["media_url"]).path == f"{API}/media/{site.media_ids[0]}"
    assert_signed(payload["media_url"], issued=first.arrived)
    data = fetch_without_key(site.stack, payload["media_url"], "image/png")
    info = call(site.stack, "GET", f"/media/{site.media_ids[0]}/info", site.keys["alice"])
    assert hashlib.sha256(data).hexdigest() == info.json()["sha256"]


# -- 3b, 4, 5. a stack with short signed URLs, a daily quota and a tight status limit ---------

QUOTA = 2
SHORT_URL_SECONDS = 2


@dataclass
class Tight:
    """The accounts-on stack with small limits, and two users (each user made costs two
    commands): carol reads a signed URL until it expires (one status read, one job), dave
    uses up his quota (no status reads) and then his status bucket, which carol's stays
    apart from. Each test holds whichever test ran before it."""

    stack: Stack
    keys: dict[str, str]


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tight]:
    env = {
        "DARKROOM_AUTH": "on",
        "DARKROOM_DAILY_JOB_QUOTA": str(QUOTA),
        "DARKROOM_SIGNED_URL_SECONDS": str(SHORT_URL_SECONDS),
        "DARKROOM_RATE_LIMIT_STATUS": "3/minute",
    }
    folder = tmp_path_factory.mktemp("auth-tight")
    with running_stack(folder, step_seconds=STEP_SECONDS, env=env) as stack:
        names = ("carol", "dave")
        scopes = ("read", "generate")
        keys = provision(stack, [(n, False) for n in names], [(n, scopes, None) for n in names])
        yield Tight(stack, dict(zip(names, keys, strict=True)))


def test_a_signed_url_stops_working_once_it_expires(tight: Tight) -> None:
    stack, key = tight.stack, tight.keys["carol"]
    job_id = submit(stack, key, "a candle burning down")
    completed_in_database(stack, job_id)  # status reads are limited to 3 a minute here
    [item] = call(stack, "GET", f"/jobs/status/{job_id}", key).json()["media"]
    expires = assert_signed(item["url"], SHORT_URL_SECONDS)
    assert_signed(item["thumbnail_url"], SHORT_URL_SECONDS)
    answers: list[tuple[float, int]] = []  # (sent at, status), until it stops working
    while not answers or answers[-1][1] == 200:
        assert time.time() < expires + 10, f"the signed URL still works: {answers}"
        sent = time.time()
        response = call(stack, "GET", item["url"])
        answers.append((sent, response.status_code))
        assert response.status_code in (200, 403), (response.status_code, response.text[:300])
        time.sleep(0.05)
    # It worked while fresh (unless this machine was too slow to ask in time), up to its
    # expiry and not after it.
    assert answers[0][1] == 200 or answers[0][0] >= expires - 1, answers
    assert all(sent < expires for sent, status in answers if status == 200), answers
    assert time.time() >= expires
    body = response.json()
    assert set(body) == {"detail", "request_id"} and "expired" in body["detail"].lower(), body
    assert call(stack, "GET", item["thumbnail_url"]).status_code == 403
    # The picture itself is still there for its owner's key.
    assert call(stack, "GET", f"/media/{item['id']}", key).status_code == 200


def seconds_to_midnight_utc() -> float:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def test_the_daily_quota_answers_429_until_midnight_utc(tight: Tight) -> None:
    stack, key = tight.stack, tight.keys["dave"]
    sql = "SELECT count(*) FROM jobs JOIN users ON users.id = jobs.owner_id WHERE users.name = ?"
    for n in range(QUOTA):
        submit(stack, key, f"a quota job {n}")
    assert stack.db_rows(sql, "dave") == [(QUOTA,)]
    refused = call(stack, "POST", "/jobs/generate", key, json={"prompt": "one too many"})
    assert refused.status_code == 429, (refused.status_code, refused.text)
    assert refused.json() == {
        "detail": f"Daily quota of {QUOTA} jobs used; resets at 00:00 UTC",
        "request_id": refused.headers["X-Request-ID"],
    }
    assert abs(int(refused.headers["Retry-After"]) - seconds_to_midnight_utc()) <= 5
    assert stack.db_rows(sql, "dave") == [(QUOTA,)], "the refused job was not stored"
    # The quota is the user's own: carol (one job at most so far) may still submit.
    submit(stack, tight.keys["carol"], "another user's job")


def test_one_users_rate_limit_leaves_another_user_alone(tight: Tight) -> None:
    stack, dave, carol = tight.stack, tight.keys["dave"], tight.keys["carol"]
    first = [call(stack, "GET", "/jobs", dave) for _ in range(4)]  # all from 127.0.0.1
    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in first] == ["2", "1", "0", "0"]
    assert 0 < int(first[-1].headers["Retry-After"]) <= 60
    # carol's bucket is her own: at most one read of hers (the expiry test) counted so far.
    second = call(stack, "GET", "/jobs", carol)
    assert second.status_code == 200, second.text
    assert second.headers["X-RateLimit-Remaining"] in ("1", "2"), "carol's count is her own"
    assert call(stack, "GET", "/jobs", dave).status_code == 429, "dave is still limited"


# -- 6. the headless commands -------------------------------------------------------------------


@dataclass
class Commands:
    """What the commands answered, run a few at once against the accounts-on stack."""

    short_password: subprocess.CompletedProcess[str]
    unknown_prefix: subprocess.CompletedProcess[str]
    users: subprocess.CompletedProcess[str]
    whole_key: str
    revoke_whole: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def commands(site: Site) -> Commands:
    stack = site.stack
    short, unknown, output = at_once(
        lambda: flask(stack, "users", "create", "shorty", stdin="short\n"),
        lambda: flask(stack, "keys", "revoke", "dr_" + "z" * 8),
        lambda: add_key(stack, "bob", "read"),
    )
    whole = key_of(output)
    assert call(stack, "GET", "/models", whole).status_code == 200
    users, revoke_whole = at_once(
        lambda: flask(stack, "users", "list"),
        lambda: flask(stack, "keys", "revoke", whole),
    )
    return Commands(short, unknown, users, whole, revoke_whole)


def test_users_list_shows_every_account(site: Site, commands: Commands) -> None:
    assert commands.users.returncode == 0, commands.users.stderr
    rows = [line.split() for line in commands.users.stdout.splitlines()]
    assert {row[0]: row[1:3] for row in rows} == {
        "root": ["admin", "active"],
        "alice": ["user", "active"],
        "bob": ["user", "active"],
    }


def test_keys_create_prints_the_key_alone_on_the_last_line(site: Site) -> None:
    for role in BY_COMMAND:
        output = site.key_outputs[role]
        *before, last = output.splitlines()
        assert last == site.keys[role] and KEY.fullmatch(last), output
        assert last[:11] in "\n".join(before), "the prefix to revoke it by is shown"
    assert "expires " in site.key_outputs["expired"].splitlines()[0]
    assert call(site.stack, "GET", "/jobs", site.keys["read-only"]).status_code == 200


def test_keys_revoke_by_prefix_or_whole_key_makes_it_401(site: Site, commands: Commands) -> None:
    prefix = site.keys["revoked"][:11]
    assert prefix in site.revoked.stdout, site.revoked.stdout
    assert_not_authenticated(call(site.stack, "GET", "/models", site.keys["revoked"]))
    assert commands.revoke_whole.returncode == 0, commands.revoke_whole.stderr
    assert commands.whole_key[:11] in commands.revoke_whole.stdout
    assert_not_authenticated(call(site.stack, "GET", "/models", commands.whole_key))


def test_keys_revoke_of_an_unknown_prefix_fails(commands: Commands) -> None:
    assert commands.unknown_prefix.returncode != 0
    assert "dr_zzzzzzzz" in commands.unknown_prefix.stderr


def test_a_short_password_is_refused(commands: Commands) -> None:
    assert commands.short_password.returncode != 0
    assert "A password has at least 8 characters" in commands.short_password.stderr
    assert "shorty" not in commands.users.stdout


# -- 7. accounts off: as open as before -------------------------------------------------------


@pytest.fixture(scope="module")
def open_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("auth-off"), step_seconds=STEP_SECONDS) as stack:
        yield stack


def test_with_accounts_off_the_api_answers_without_a_key(open_stack: Stack) -> None:
    stack = open_stack
    job_id = submit(stack, None, "an open gate")
    [item] = finished(stack, None, job_id)["media"]
    assert item["url"] == f"{stack.base_url}{API}/media/{item['id']}", "no signature"
    assert item["thumbnail_url"] == f"{stack.base_url}{API}/media/{item['id']}/thumbnail"
    fetch_without_key(stack, item["url"], "image/png")
    fetch_without_key(stack, item["thumbnail_url"], "image/webp")
    info = call(stack, "GET", f"/media/{item['id']}/info")
    assert info.status_code == 200 and "?" not in info.json()["storage_url"]
    assert job_id in listed(stack, None)[0]
    assert call(stack, "GET", f"/jobs/{job_id}/webhooks").status_code == 200
    assert call(stack, "GET", "/models").status_code == 200
    assert call(stack, "DELETE", f"/media/{item['id']}").status_code == 204


def test_with_accounts_off_the_document_declares_no_security(open_stack: Stack) -> None:
    document = call(open_stack, "GET", "/openapi.json").json()
    assert "securitySchemes" not in document.get("components", {})
    assert "security" not in document
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert "security" not in operation, (method, path)
            assert "401" not in operation.get("responses", {}), (method, path)
