"""Accounts in-process: what is stored, scopes declared on every operation, ownership in the
pages, jobs adopted by the first administrator, the quota, signed URLs, the open mode.

The same rules over real HTTP against the Procfile's processes: tests/test_auth_api.py
(API) and tests/test_browser_accounts.py (pages in Chromium).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from werkzeug.security import check_password_hash

from tests.helpers import TEST_CONFIG, run_queue
from webapp import accounts, auth, create_app
from webapp.extensions import db
from webapp.models import ApiKey, Job, User

PASSWORD = "correct horse battery"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Accounts on for this module's apps (a test may switch them off again)."""
    return {**app_config, "AUTH": "on"}


def sign_in(client: FlaskClient, user: User) -> None:
    """A browser session of the user, as /signin leaves it."""
    with client.session_transaction() as session:
        session[auth.SESSION_USER] = user.id
        session[auth.SESSION_EPOCH] = user.session_epoch


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def token(client: FlaskClient, path: str = "/") -> str:
    g.pop("csrf_token", None)  # each page request of a real server makes its own
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


@pytest.fixture
def alice(app: Flask) -> User:
    return accounts.create_user("alice", PASSWORD, admin=True)


@pytest.fixture
def bob(app: Flask, alice: User) -> User:
    return accounts.create_user("bob", PASSWORD)


# -- what is stored -------------------------------------------------------------------------


def test_passwords_are_kept_as_scrypt_hashes_only(app: Flask, alice: User) -> None:
    stored = db.session.get(User, alice.id)
    assert stored is not None
    assert stored.password_hash.startswith("scrypt:")
    assert PASSWORD not in stored.password_hash
    assert check_password_hash(stored.password_hash, PASSWORD)
    assert accounts.authenticate("alice", PASSWORD) is not None
    assert accounts.authenticate("alice", PASSWORD + "x") is None
    assert accounts.authenticate("nobody", PASSWORD) is None


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("", PASSWORD, "1 to 64"),
        ("x" * 65, PASSWORD, "1 to 64"),
        ("a b", PASSWORD, "letters, digits"),
        ("carol", "short", "at least 8"),
        ("carol", "p" * 1025, "at most 1024"),
        ("alice", PASSWORD, "already exists"),
    ],
)
def test_unfit_accounts_are_refused(alice: User, name: str, password: str, message: str) -> None:
    with pytest.raises(accounts.AccountError, match=message):
        accounts.create_user(name, password)


def test_api_keys_are_shown_once_and_kept_as_sha256(app: Flask, alice: User) -> None:
    row, key = accounts.create_key(alice, "script", ["generate", "read"], expires_days=7)
    assert re.fullmatch(r"dr_[A-Za-z0-9_-]{32,}", key)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.prefix == key[:11]
    assert row.scopes == ["read", "generate"]  # the usual order
    db.session.remove()
    db.engine.dispose()
    raw = (Path(app.instance_path) / "darkroom.db").read_bytes()
    assert key.encode() not in raw
    assert key[11:].encode() not in raw


def test_only_administrators_make_admin_keys(bob: User) -> None:
    with pytest.raises(accounts.AccountError, match="Only an administrator"):
        accounts.create_key(bob, "root", ["admin"])
    with pytest.raises(accounts.AccountError, match="Unknown scope"):
        accounts.create_key(bob, "x", ["write"])
    with pytest.raises(accounts.AccountError, match="at least one scope"):
        accounts.create_key(bob, "x", [])


def test_the_last_administrator_stays_one(alice: User, bob: User) -> None:
    with pytest.raises(accounts.AccountError, match="last administrator"):
        accounts.set_disabled(alice, True)
    with pytest.raises(accounts.AccountError, match="last administrator"):
        accounts.set_admin(alice, False)
    accounts.set_admin(bob, True)
    accounts.set_disabled(alice, True)
    assert accounts.authenticate("alice", PASSWORD) is None


# -- every operation names its scope --------------------------------------------------------


def test_every_api_operation_declares_its_scope(app: Flask) -> None:
    """An operation without a declared scope would need `admin`: a new endpoint must say."""
    undeclared = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.split(".")[0] in auth.OPEN_BLUEPRINTS:
            continue
        view = app.view_functions[rule.endpoint]
        for method in (rule.methods or set()) - {"OPTIONS", "HEAD"}:
            marked = getattr(auth.view_method(view, method), "_darkroom_scope", None)
            if marked is None:
                undeclared.append(f"{method} {rule.rule}")
    assert undeclared == []


def test_the_document_declares_the_bearer_scheme_and_scopes(
    app: Flask, client: FlaskClient
) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    generate = doc["paths"]["/api/v1/jobs/generate"]["post"]
    assert generate["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(generate["responses"])
    assert "`generate` scope" in generate["description"]
    assert doc["paths"]["/api/v1/health/live"]["get"]["security"] == []
    media = doc["paths"]["/api/v1/media/{media_id}"]["get"]
    assert {p["name"] for p in media["parameters"]} >= {"expires", "signature"}


def test_without_accounts_the_document_names_no_scheme(app_config: dict[str, Any]) -> None:
    open_app = create_app({**app_config, "AUTH": "off", "AUTO_MIGRATE": False})
    with open_app.app_context():
        doc = open_app.test_client().get("/api/v1/openapi.json").get_json()
        db.session.remove()
    assert "securitySchemes" not in doc.get("components", {})
    assert "security" not in doc["paths"]["/api/v1/jobs/generate"]["post"]
    assert "401" not in doc["paths"]["/api/v1/jobs/generate"]["post"]["responses"]


# -- jobs from before accounts ----------------------------------------------------------------


def test_the_first_administrator_takes_the_jobs_made_before_accounts(
    app_config: dict[str, Any],
) -> None:
    open_app = create_app({**app_config, "AUTH": "off", "AUTO_MIGRATE": False})
    with open_app.app_context():
        client = open_app.test_client()
        made = [
            client.post("/api/v1/jobs/generate", json={"prompt": f"before {i}"}).get_json()["id"]
            for i in range(3)
        ]
        assert db.session.get(Job, made[0]).owner_id is None  # type: ignore[union-attr]
        admin = accounts.create_user("first", PASSWORD, admin=True)
        owners = {db.session.get(Job, i).owner_id for i in made}  # type: ignore[union-attr]
        assert owners == {admin.id}
        # Accounts off again for a while, then on: the new job goes to the administrator at
        # the next start.
        later = client.post("/api/v1/jobs/generate", json={"prompt": "later"}).get_json()["id"]
        db.session.remove()
    on_again = create_app({**app_config, "AUTO_MIGRATE": False})
    with on_again.app_context():
        assert db.session.get(Job, later).owner_id == admin.id  # type: ignore[union-attr]
        db.session.remove()


# -- the daily quota ----------------------------------------------------------------------------


def test_the_daily_quota_answers_429_until_midnight(app: Flask, alice: User, bob: User) -> None:
    app.config["DAILY_JOB_QUOTA"] = 2
    _, key = accounts.create_key(bob, "k", ["generate"])
    client = app.test_client()
    for i in range(2):
        created = client.post(
            "/api/v1/jobs/generate", json={"prompt": f"p{i}"}, headers=bearer(key)
        )
        assert created.status_code == 201
    refused = client.post("/api/v1/jobs/generate", json={"prompt": "p3"}, headers=bearer(key))
    assert refused.status_code == 429
    assert refused.get_json()["detail"] == "Daily quota of 2 jobs used; resets at 00:00 UTC"
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
    assert db.session.query(Job).filter_by(owner_id=bob.id).count() == 2
    # An administrator's own quota for bob wins over the default; 0 is unlimited.
    accounts.set_quota(bob, 0)
    again = client.post("/api/v1/jobs/generate", json={"prompt": "p3"}, headers=bearer(key))
    assert again.status_code == 201


# -- ownership in the pages ---------------------------------------------------------------------


def test_pages_show_only_ones_own_work(app: Flask, alice: User, bob: User) -> None:
    _, alice_key = accounts.create_key(alice, "a", ["generate", "read"])
    _, bob_key = accounts.create_key(bob, "b", ["generate", "read"])
    client = app.test_client()
    mine = client.post(
        "/api/v1/jobs/generate", json={"prompt": "bob's own lighthouse"}, headers=bearer(bob_key)
    ).get_json()["id"]
    theirs = client.post(
        "/api/v1/jobs/generate", json={"prompt": "alice's secret garden"}, headers=bearer(alice_key)
    ).get_json()["id"]
    run_queue()
    media_id = db.session.get(Job, theirs).media[0].id  # type: ignore[union-attr]
    sign_in(client, bob)
    index = client.get("/").get_data(as_text=True)
    assert "bob&#39;s own lighthouse" in index and "secret garden" not in index
    assert 'id="user-filter"' not in index  # only administrators narrow by user
    gallery = client.get("/gallery?q=garden", headers={"HX-Request": "true"})
    assert "secret garden" not in gallery.get_data(as_text=True)
    poll = client.get(f"/poll?id={theirs}&detail={theirs}", headers={"HX-Request": "true"})
    assert theirs not in poll.get_data(as_text=True)
    for path in (f"/jobs/{theirs}", f"/media/{media_id}", f"/media/{media_id}/thumbnail"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/?remix={theirs}").status_code == 404
    csrf = token(client)
    for action in ("cancel", "delete", "vary", "webhooks/redeliver", "share"):
        answer = client.post(f"/jobs/{theirs}/{action}", data={"csrf_token": csrf})
        assert answer.status_code == 404, action
    assert db.session.get(Job, theirs) is not None
    # The administrator sees both and can narrow to one user.
    admin = app.test_client()
    sign_in(admin, alice)
    both = admin.get("/").get_data(as_text=True)
    assert "lighthouse" in both and "secret garden" in both and 'id="user-filter"' in both
    only_bob = admin.get("/gallery?user=bob", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "lighthouse" in only_bob and "secret garden" not in only_bob
    assert mine in only_bob


def test_pages_ask_for_an_account(app: Flask, client: FlaskClient) -> None:
    first = client.get("/")
    assert first.status_code == 303 and first.headers["Location"] == "/setup"
    accounts.create_user("alice", PASSWORD, admin=True)
    later = client.get("/jobs/whatever?x=1")
    assert later.status_code == 303
    assert later.headers["Location"].startswith("/signin?next=")
    htmx = client.get("/poll", headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/signin")
    assert client.get("/setup").status_code == 303  # only while no account exists


def test_sign_out_ends_every_session_of_the_account(app: Flask, alice: User) -> None:
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop, alice)
    sign_in(phone, alice)
    assert phone.get("/").status_code == 200
    laptop.post("/signout", data={"csrf_token": token(laptop)})
    assert phone.get("/").status_code == 303


def test_sign_in_goes_only_to_paths_on_this_site(app: Flask, alice: User) -> None:
    client = app.test_client()
    for target, expected in (
        ("/jobs/abc", "/jobs/abc"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        g.pop("csrf_token", None)
        csrf = token(client, "/signin")
        answer = client.post(
            "/signin",
            data={"csrf_token": csrf, "name": "alice", "password": PASSWORD, "next": target},
        )
        assert answer.status_code == 303 and answer.headers["Location"] == expected, target
        client.post("/signout", data={"csrf_token": token(client)})
        alice = db.session.get(User, alice.id)  # type: ignore[assignment]


# -- signed media URLs ------------------------------------------------------------------------


def test_signed_urls_hold_until_they_expire_and_not_when_altered(app: Flask, alice: User) -> None:
    with app.test_request_context():
        url = auth.signed("/api/v1/media/abc")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    expires = int(query["expires"][0])
    lifetime = app.config["SIGNED_URL_SECONDS"]
    assert time.time() + lifetime - 3600 - 1 <= expires <= time.time() + lifetime
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["signature"][0])

    def check(path: str, **args: Any) -> str | None:
        with app.test_request_context(path, query_string=args):
            return auth.signature_problem()

    sig = query["signature"][0]
    assert check("/api/v1/media/abc", expires=expires, signature=sig) is None
    assert check("/api/v1/media/abd", expires=expires, signature=sig)
    assert check("/api/v1/media/abc", expires=expires + 1, signature=sig)
    altered = sig[:-1] + ("B" if sig.endswith("A") else "A")  # one in 64 already ends in A
    assert check("/api/v1/media/abc", expires=expires, signature=altered)
    assert check("/api/v1/media/abc", expires="soon", signature=sig)
    with app.test_request_context():
        stale = urlsplit(auth.signed("/api/v1/media/abc", lifetime=0.5))
    time.sleep(1.1)
    stale_args = {k: v[0] for k, v in parse_qs(stale.query).items()}
    assert check(stale.path, **stale_args) == "This media URL has expired"


def test_without_accounts_urls_are_not_signed(app_config: dict[str, Any]) -> None:
    open_app = create_app({**app_config, "AUTH": "off", "AUTO_MIGRATE": False})
    with open_app.test_request_context():
        assert auth.signed("/api/v1/media/abc") == "/api/v1/media/abc"


# -- the open mode -------------------------------------------------------------------------------


def test_the_open_mode_notice_can_be_dismissed(app_config: dict[str, Any]) -> None:
    open_app = create_app({**TEST_CONFIG, **app_config, "AUTH": "off", "AUTO_MIGRATE": False})
    with open_app.app_context():
        client = open_app.test_client()
        page = client.get("/").get_data(as_text=True)
        assert "Anyone who can reach this page can use it" in page
        assert 'href="/help/accounts"' in page
        help_page = client.get("/help/accounts").get_data(as_text=True)
        assert "DARKROOM_AUTH=on" in help_page
        for path in ("/setup", "/signin", "/settings"):
            assert client.get(path).status_code == 404, path
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        dismissed = client.post(
            "/notice/dismiss", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
        )
        assert dismissed.status_code == 200
        assert "darkroom_open_notice=dismissed" in dismissed.headers["Set-Cookie"]
        assert "Anyone who can reach" not in client.get("/").get_data(as_text=True)
        db.session.remove()


def test_accounts_setting_is_checked_at_start(app_config: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="DARKROOM_AUTH: expected on or off, got 'maybe'"):
        create_app({**app_config, "AUTH": "maybe"})
    for value, expected in ((True, "on"), ("yes", "on"), ("OFF", "off"), (0, "off")):
        built = create_app({**app_config, "AUTH": value, "AUTO_MIGRATE": False})
        assert built.config["AUTH"] == expected


def test_a_disabled_users_keys_stop_working(app: Flask, alice: User, bob: User) -> None:
    _, key = accounts.create_key(bob, "k", ["read"])
    client = app.test_client()
    assert client.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
    accounts.set_disabled(bob, True)
    assert client.get("/api/v1/jobs", headers=bearer(key)).status_code == 401
    stored = db.session.query(ApiKey).filter_by(user_id=bob.id).one()
    assert stored.last_used_at is not None


def test_the_migration_adds_and_removes_the_account_tables(app: Flask) -> None:
    from flask_migrate import downgrade, upgrade

    from webapp.database import MIGRATIONS

    db.session.remove()
    downgrade(directory=str(MIGRATIONS), revision="0005")
    path = Path(app.instance_path) / "darkroom.db"
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        columns = {r[1] for r in conn.execute("pragma table_info(jobs)")}
        triggers = {
            r[0] for r in conn.execute("select name from sqlite_master where type='trigger'")
        }
    assert not {"users", "api_keys", "share_links"} & tables
    assert "owner_id" not in columns
    assert triggers  # the job counts' triggers on jobs survive
    upgrade(directory=str(MIGRATIONS))
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        after = {r[0] for r in conn.execute("select name from sqlite_master where type='trigger'")}
    assert {"users", "api_keys", "share_links"} <= tables
    assert after == triggers


# -- found in review: quotas, hostile values, signatures beside keys ----------------------------


def test_deleting_jobs_does_not_give_quota_back(app: Flask, alice: User, bob: User) -> None:
    app.config["DAILY_JOB_QUOTA"] = 2
    _, key = accounts.create_key(bob, "k", ["generate", "read"])
    client = app.test_client()
    made = [
        client.post("/api/v1/jobs/generate", json={"prompt": f"p{i}"}, headers=bearer(key))
        for i in range(2)
    ]
    assert [r.status_code for r in made] == [201, 201]
    sign_in(client, bob)
    csrf = token(client)
    for answer in made:
        deleted = client.post(f"/jobs/{answer.get_json()['id']}/delete", data={"csrf_token": csrf})
        assert deleted.status_code == 303
    assert db.session.query(Job).filter_by(owner_id=bob.id).count() == 0
    again = client.post("/api/v1/jobs/generate", json={"prompt": "p3"}, headers=bearer(key))
    assert again.status_code == 429


@pytest.mark.parametrize("value", ["²", "٣", "1" * 5000, "99999999999999999999", "-1", "1.5"])
def test_hostile_numbers_in_forms_are_422_not_500(
    app: Flask, alice: User, bob: User, value: str
) -> None:
    _, key = accounts.create_key(alice, "k", ["generate"])
    client = app.test_client()
    job_id = client.post(
        "/api/v1/jobs/generate", json={"prompt": "x"}, headers=bearer(key)
    ).get_json()["id"]
    sign_in(client, alice)
    csrf = token(client)
    answers = {
        "key": client.post(
            "/settings/keys",
            data={"csrf_token": csrf, "name": "n", "scope": "read", "expires_days": value},
        ),
        "quota": client.post(
            f"/settings/users/{bob.id}",
            data={"csrf_token": csrf, "action": "quota", "quota": value},
        ),
        "share": client.post(
            f"/jobs/{job_id}/share", data={"csrf_token": csrf, "expires_days": value}
        ),
    }
    assert {k: a.status_code for k, a in answers.items()} == {
        "key": 422,
        "quota": 422,
        "share": 422,
    }
    assert accounts.shares_of(alice) == [] and len(accounts.keys_of(alice)) == 1
    assert db.session.get(User, bob.id).daily_quota is None  # type: ignore[union-attr]


def test_a_quota_too_large_is_refused(bob: User) -> None:
    with pytest.raises(accounts.AccountError, match="0 \\(unlimited\\) to 1,000,000"):
        accounts.set_quota(bob, 2_000_000)


def test_sign_in_with_control_characters_in_next_goes_home(app: Flask, alice: User) -> None:
    client = app.test_client()
    csrf = token(client, "/signin")
    answer = client.post(
        "/signin",
        data={"csrf_token": csrf, "name": "alice", "password": PASSWORD, "next": "/\r\nX: y"},
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_nul_characters_are_refused_before_any_query(app: Flask, alice: User) -> None:
    client = app.test_client()
    assert client.get("/signin?next=%00").status_code == 400
    assert client.get("/s/a%00b").status_code == 400
    assert client.get("/api/v1/jobs/status/a%00b").status_code == 404
    _, key = accounts.create_key(alice, "k", ["read"])
    listed = client.get("/api/v1/jobs?user=a%00", headers=bearer(key))
    assert listed.status_code == 200 and listed.get_json()["total"] == 0


def test_a_key_wins_over_a_stale_signature_and_head_works_with_the_session(
    app: Flask, alice: User
) -> None:
    _, key = accounts.create_key(alice, "k", ["generate", "read"])
    client = app.test_client()
    job_id = client.post(
        "/api/v1/jobs/generate", json={"prompt": "x"}, headers=bearer(key)
    ).get_json()["id"]
    run_queue()
    media_id = db.session.get(Job, job_id).media[0].id  # type: ignore[union-attr]
    stale = f"/api/v1/media/{media_id}?expires=1&signature=AAAA"
    assert client.get(stale).status_code == 403
    assert client.get(stale, headers=bearer(key)).status_code == 200
    sign_in(client, alice)
    assert client.head(f"/api/v1/media/{media_id}").status_code == 200
    assert client.get(f"/api/v1/media/{media_id}").status_code == 200


def test_a_share_link_does_not_tell_whether_another_jobs_picture_expired(
    app: Flask, alice: User
) -> None:
    _, key = accounts.create_key(alice, "k", ["generate"])
    client = app.test_client()
    ids = [
        client.post("/api/v1/jobs/generate", json={"prompt": p}, headers=bearer(key)).get_json()[
            "id"
        ]
        for p in ("shared", "private")
    ]
    run_queue()
    shared, private = (db.session.get(Job, i) for i in ids)
    link = accounts.create_share(shared, alice)  # type: ignore[arg-type]
    other = private.media[0]  # type: ignore[union-attr]
    from webapp.database import write_transaction
    from webapp.models import now_utc

    with write_transaction():
        other.purged_at = now_utc()
    assert client.get(f"/s/{link.id}/media/{other.id}").status_code == 404
    assert client.get(f"/s/{link.id}/media/{shared.media[0].id}").status_code == 200  # type: ignore[union-attr]


def test_signing_in_starts_a_fresh_session(app: Flask, alice: User) -> None:
    """Nothing a session held before sign-in (a planted value, its CSRF token) survives it:
    a cookie someone set in a visitor's browser cannot become their signed-in session."""
    client = app.test_client()
    before = token(client, "/signin")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    answer = client.post(
        "/signin", data={"csrf_token": before, "name": "alice", "password": PASSWORD}
    )
    assert answer.status_code == 303
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session[auth.SESSION_USER] == alice.id
    after = token(client)
    assert after != before
