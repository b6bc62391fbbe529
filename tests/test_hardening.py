"""Hostile and careless clients, in-process: cross-site writes, body types, storage faults.

The faults that need real sockets and processes (chunked bodies, slow clients, hanging
webhook receivers) are in tests/test_hardening_wire.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.helpers import csrf_token, run_queue, submit
from webapp import media, tasks
from webapp.extensions import db
from webapp.models import Job

API = "/api/v1"
GENERATE = f"{API}/jobs/generate"
BODY = json.dumps({"prompt": "a lighthouse", "parameters": {"num_inference_steps": 1}})


def job_count() -> int:
    db.session.commit()
    return int(db.session.scalar(select(func.count()).select_from(Job)) or 0)


# -- no cross-site writes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "application/jsonx", "text/json"],
)  # fmt: skip
def test_a_job_body_must_say_it_is_json(client: FlaskClient, content_type: str | None) -> None:
    """The bodies a page on another site can send without asking first are refused: 415."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(GENERATE, data=BODY, headers=headers)
    assert response.status_code == 415, response.get_data(as_text=True)
    body = response.get_json()
    assert "application/json" in body["detail"] and body["request_id"]
    assert job_count() == 0


def test_json_with_a_charset_is_json(client: FlaskClient) -> None:
    response = client.post(
        GENERATE, data=BODY, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 201, response.get_json()


CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://darkroom.test.evil.example"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://darkroom.test"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_writes_from_another_site_are_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    """Cancel, delete and redeliver carry no body a browser would have to ask about: the
    browser's own word on where the request comes from decides (403)."""
    job_id = submit(client)["id"]
    media_id = "0" * 32
    for method, path in [
        ("DELETE", f"{API}/jobs/{job_id}"),
        ("DELETE", f"{API}/media/{media_id}"),
        ("POST", f"{API}/jobs/{job_id}/webhooks/redeliver"),
        ("POST", GENERATE),
    ]:
        response = client.open(path, method=method, headers=headers, json={"prompt": "x"})
        assert response.status_code == 403, (method, path, response.get_data(as_text=True))
        assert "Cross-site request refused" in response.get_json()["detail"]
    assert client.get(f"{API}/jobs/status/{job_id}").get_json()["status"] == "pending"
    assert job_count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},  # scripts, curl, the guide's clients
        {"Origin": "http://darkroom.test"},  # our own pages (the configured public URL)
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},  # as reached
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_writes_from_scripts_and_our_own_pages_pass(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    job_id = submit(client)["id"]
    response = client.delete(f"{API}/jobs/{job_id}", headers=headers)
    assert response.status_code == 204, response.get_data(as_text=True)


def test_reads_from_anywhere_still_work(client: FlaskClient) -> None:
    """Only writes are guarded: another site may still show a job's status (no cookies)."""
    job_id = submit(client)["id"]
    response = client.get(f"{API}/jobs/status/{job_id}", headers=CROSS_SITE[1])
    assert response.status_code == 200


def test_the_openapi_document_names_403_and_415(client: FlaskClient) -> None:
    paths = client.get(f"{API}/openapi.json").get_json()["paths"]
    generate = paths[GENERATE]["post"]["responses"]
    assert {"403", "415", "503"} <= set(generate)
    assert "Retry-After" in generate["503"]["headers"]
    assert "403" in paths[f"{API}/jobs/{{job_id}}/webhooks/redeliver"]["post"]["responses"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch", "delete"):
                assert "403" in operation["responses"], (method, path)


# -- storage faults ---------------------------------------------------------------------------


def break_folder(path: Path) -> None:
    """Put a file where a media folder should be: every write there fails (ENOTDIR)."""
    if path.exists():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder")


def test_a_storage_fault_is_retried_and_named(app: Flask, client: FlaskClient) -> None:
    """A write that fails is a transient failure: the job waits for a retry, with the cause."""
    job_id = submit(client, parameters={"num_inference_steps": 1})["id"]
    break_folder(media.media_root() / "generated")
    run_queue(limit=1)
    db.session.commit()
    body = client.get(f"{API}/jobs/status/{job_id}").get_json()
    assert body["retry_count"] == 1, body
    assert body["status"] in ("pending", "retrying"), body
    assert body["error_message"].startswith("media storage is not writable: "), body
    assert "Not a directory" in body["error_message"] or "File exists" in body["error_message"]

    (media.media_root() / "generated").unlink()
    time.sleep(0.1)  # past the retry's short delay (TEST_CONFIG)
    tasks.run_job.call_local(job_id)
    db.session.commit()
    body = client.get(f"{API}/jobs/status/{job_id}").get_json()
    assert body["status"] == "completed", body
    assert body["retry_count"] == 1


def test_unwritable_storage_pauses_new_jobs(app: Flask, client: FlaskClient) -> None:
    """While readiness says storage is down, a new job answers 503 with Retry-After."""
    root = media.media_root()
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        if child.is_dir():
            child.rmdir()
    root.rmdir()
    root.write_text("not a folder")
    try:
        ready = client.get(f"{API}/health/ready")
        assert ready.status_code == 503
        response = client.post(GENERATE, json={"prompt": "a lighthouse"})
        assert response.status_code == 503, response.get_json()
        assert response.headers["Retry-After"] == "30"
        assert "media storage is not writable" in response.get_json()["detail"]
        assert job_count() == 0
        page = client.post("/jobs", data={"prompt": "x"})  # no CSRF token: refused first
        assert page.status_code == 400
    finally:
        root.unlink()


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("MIN_FREE_DISK_MB", 10**12, "below the floor"),
        ("MAX_STORAGE_GB", 1e-12, "holds its cap"),
    ],
)
def test_disk_limits_pause_new_jobs(
    app: Flask, client: FlaskClient, setting: str, value: Any, words: str
) -> None:
    submit(client, parameters={"num_inference_steps": 1})
    run_queue()
    app.config[setting] = value
    media._STORED_BYTES.clear()
    response = client.post(GENERATE, json={"prompt": "one too many"})
    assert response.status_code == 503, response.get_json()
    assert words in response.get_json()["detail"]
    assert response.headers["Retry-After"].isdigit()
    # The browser's form is paused the same way, with an HTML page that says why.
    page = client.post("/jobs", data={"csrf_token": csrf_token(client), "prompt": "also"})
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert words in page.get_data(as_text=True) and page.headers["Retry-After"].isdigit()
    health = client.get(f"{API}/health").get_json()
    assert health["services"]["storage"] is False


# -- the smaller points -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200e", "\u2060", "\ufeff"]
)
def test_prompts_refuse_characters_that_reorder_or_hide_text(
    client: FlaskClient, char: str
) -> None:
    for body in (
        {"prompt": f"a cat{char} on a mat"},
        {"prompt": "a cat", "parameters": {"negative_prompt": f"dogs{char}"}},
    ):
        response = client.post(GENERATE, json=body)
        assert response.status_code == 422, response.get_json()
        [error] = response.get_json()["detail"]
        assert error["type"] == "string_invisible_character"
        assert f"U+{ord(char):04X}" in error["msg"]
    assert job_count() == 0


def test_joiners_that_scripts_and_emoji_need_are_kept(client: FlaskClient) -> None:
    for prompt in (
        "a family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    ):
        response = client.post(GENERATE, json={"prompt": prompt})
        assert response.status_code == 201, response.get_json()


def test_the_session_cookie_is_lax_and_secure_over_https(app: Flask) -> None:
    plain = app.test_client().get("/", base_url="http://darkroom.test")
    [cookie] = plain.headers.getlist("Set-Cookie")
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    g.pop("csrf_token", None)  # the test's app context outlives the request: a new visitor
    secure = app.test_client().get("/", base_url="https://darkroom.test")
    [cookie] = secure.headers.getlist("Set-Cookie")
    assert "SameSite=Lax" in cookie and "; Secure" in cookie


def test_csrf_tokens_hold_for_a_day(app: Flask) -> None:
    assert app.config["WTF_CSRF_TIME_LIMIT"] == 24 * 3600


def test_media_may_be_kept_by_the_browser_only(client: FlaskClient) -> None:
    job_id = submit(client, parameters={"num_inference_steps": 1})["id"]
    run_queue()
    [item] = client.get(f"{API}/jobs/status/{job_id}").get_json()["media"]
    for path in (f"{API}/media/{item['id']}", f"{API}/media/{item['id']}/thumbnail"):
        cache = client.get(path).headers["Cache-Control"]
        assert "private" in cache and "public" not in cache and "max-age=86400" in cache


def test_ipv6_clients_are_counted_per_64(tmp_path: Path) -> None:
    """Addresses of one /64 share a bucket; another /64 has its own; IPv4 is per address."""
    from tests.helpers import TEST_CONFIG
    from webapp import create_app

    limited = create_app(
        {**TEST_CONFIG, "INSTANCE_PATH": str(tmp_path / "limited"), "RATE_LIMIT_STATUS": "2/minute"}
    )
    with limited.app_context():
        _count_per_network(limited.test_client())


def _count_per_network(client: FlaskClient) -> None:
    job_id = submit(client)["id"]
    path = f"{API}/jobs/status/{job_id}"

    def read(address: str) -> int:
        return client.get(path, environ_base={"REMOTE_ADDR": address}).status_code

    assert [read("2001:db8:1:2::1"), read("2001:db8:1:2:ffff::9")] == [200, 200]
    assert read("2001:db8:1:2:abcd::1") == 429  # the same /64, a third address
    assert read("2001:db8:1:3::1") == 200  # the next /64
    assert [read("192.0.2.1"), read("192.0.2.1"), read("192.0.2.1")] == [200, 200, 429]
    assert read("192.0.2.2") == 200
    assert read("::ffff:192.0.2.2") == 200  # an IPv4 client seen through an IPv6 socket
    assert read("192.0.2.2") == 429


def test_an_output_download_does_not_follow_a_redirect_into_the_network() -> None:
    """The file server may move a file on its own host, never to a private address."""
    from tests.webhook_receiver import Receiver, Reply
    from webapp.providers.base import PermanentProviderError
    from webapp.providers.replicate.client import ReplicateClient, Settings

    settings = Settings(
        token="r8_test", base_url="http://127.0.0.1:9", connect_timeout=2, read_timeout=2,
        poll_seconds=1, wait_seconds=0, deadline_seconds=60,
        max_download_bytes=1024, max_pixels=10**6,
    )  # fmt: skip
    with Receiver() as files:
        files.reply(
            Reply.redirect(files.url("/moved.png")),
            Reply(200, body=b"the picture"),
            Reply.redirect("http://10.1.2.3/secret"),
            Reply.redirect("http://169.254.169.254/latest/meta-data/"),
        )
        with ReplicateClient(settings) as replicate:
            assert replicate.download(files.url("/out.png")) == b"the picture"
            for _ in range(2):
                with pytest.raises(PermanentProviderError, match="refused address"):
                    replicate.download(files.url("/out.png"))
        assert [r.path for r in files.requests] == [
            "/out.png",
            "/moved.png",
            "/out.png",
            "/out.png",
        ]


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """A real, tiny file system (tmpfs) mounted on `folder`; skips where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_read_only_or_full_disk_is_named_and_retried(app: Flask, client: FlaskClient) -> None:
    """Real file-system faults: EROFS and ENOSPC fail the attempt as transient, named."""
    app.config["MIN_FREE_DISK_MB"] = 0
    app.config["MAX_RETRIES"] = 5
    job_id = submit(client, parameters={"num_inference_steps": 1, "width": 512, "height": 512})[
        "id"
    ]
    with small_disk(media.media_root()) as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert client.post(GENERATE, json={"prompt": "while read-only"}).status_code == 503
        tasks.run_job.call_local(job_id)
        db.session.commit()
        body = client.get(f"{API}/jobs/status/{job_id}").get_json()
        assert body["error_message"] == "media storage is not writable: Read-only file system"
        assert body["retry_count"] == 1 and body["status"] in ("pending", "retrying"), body

        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        # Leave no room for a picture (unbuffered: closing has nothing left to flush).
        with open(disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
        time.sleep(0.1)  # past the retry's short delay (TEST_CONFIG)
        tasks.run_job.call_local(job_id)
        db.session.commit()
        body = client.get(f"{API}/jobs/status/{job_id}").get_json()
        assert body["error_message"] == "media storage is not writable: No space left on device"
        assert body["retry_count"] == 2, body
        assert not list(disk.rglob("*.part")), "a cut-off write was left behind"
