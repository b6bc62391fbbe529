"""Rate limits: per client, shared by the API and the browser, exact across processes."""

from __future__ import annotations

import fcntl
import io
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from tests.helpers import csrf_token
from tests.procs import API, running_stack

BODY = {"prompt": "a limited fox", "parameters": {"width": 128, "height": 128}}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    limits = {"RATE_LIMIT_CREATE": "3/minute", "RATE_LIMIT_STATUS": "4/minute"}
    return {**app_config, **limits, "RATE_LIMIT_UPLOAD": "2/minute"}


def create(client: FlaskClient, **headers: str):
    return client.post(f"{API}/jobs/generate", json=BODY, headers=headers)


def test_creation_is_limited_per_client(client: FlaskClient) -> None:
    answers = [create(client) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[-1].headers["X-RateLimit-Limit"] == "3"
    assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
    refused = create(client)
    assert refused.status_code == 429
    body = refused.get_json()
    assert set(body) == {"detail", "request_id"}
    assert "3 per 1 minute" in body["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "X-RateLimit-Reset" in refused.headers
    assert client.get(f"{API}/jobs").get_json()["total"] == 3, "a refused request stores nothing"
    # Another client has its own bucket.
    other = client.post(f"{API}/jobs/generate", json=BODY, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 201


def test_redelivery_draws_on_the_creation_bucket(client: FlaskClient) -> None:
    """Each redelivery sends a signed POST out: it counts as a creation (API and page)."""
    job_id = create(client).get_json()["id"]  # 1 of 3; not finished: each answers 409
    assert client.post(f"{API}/jobs/{job_id}/webhooks/redeliver").status_code == 409
    form = {"csrf_token": csrf_token(client)}
    assert client.post(f"/jobs/{job_id}/webhooks/redeliver", data=form).status_code == 409
    refused = client.post(f"{API}/jobs/{job_id}/webhooks/redeliver")
    assert refused.status_code == 429, refused.get_json()
    assert create(client).status_code == 429


def test_api_and_browser_share_the_creation_bucket(client: FlaskClient) -> None:
    token = csrf_token(client)
    assert create(client).status_code == 201
    assert create(client).status_code == 201
    form = {"csrf_token": token, "prompt": "from the form", "model": "demo"}
    assert client.post("/jobs", data=form, headers={"HX-Request": "true"}).status_code == 200
    refused = client.post("/jobs", data=form, headers={"HX-Request": "true"})
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert "Retry-After" in refused.headers
    assert create(client).status_code == 429


def test_uploads_have_their_own_bucket(client: FlaskClient) -> None:
    """Each upload is decoded and re-encoded: limited on its own, apart from job creation."""
    pictures = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]

    def send(image: Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return client.post(
            f"{API}/uploads",
            data={"file": (io.BytesIO(buffer.getvalue()), "p.png")},
            content_type="multipart/form-data",
        )

    answers = [send(image) for image in pictures]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert "2 per 1 minute" in answers[-1].get_json()["detail"]
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    assert create(client).status_code == 201, "job creation keeps its own allowance"


def test_status_reads_are_limited_but_browser_polling_is_not(client: FlaskClient) -> None:
    job = create(client).get_json()
    codes = [client.get(job["status_url"]).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    polls = [client.get(f"/poll?id={job['id']}", headers={"HX-Request": "true"}) for _ in range(10)]
    assert {p.status_code for p in polls} == {200}


def test_a_forged_forwarded_for_buys_nothing(client: FlaskClient) -> None:
    codes = [create(client, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]


@pytest.mark.parametrize("trusted", [1])
def test_a_trusted_proxy_count_uses_the_forwarded_address(
    app_config: dict[str, Any], trusted: int, tmp_path: Path
) -> None:
    from webapp import create_app

    app = create_app({**app_config, "TRUSTED_PROXIES": trusted, "INSTANCE_PATH": str(tmp_path)})
    client = app.test_client()
    codes = [create(client, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(5)]
    assert codes == [201] * 5, "each forwarded client has its own bucket"
    same = [create(client, **{"X-Forwarded-For": "198.51.100.1"}).status_code for _ in range(4)]
    assert same == [201, 201, 201, 429]


@pytest.mark.e2e
def test_the_limit_is_exact_across_web_processes(tmp_path: Path) -> None:
    """Two gunicorn workers (the Procfile's default) still grant exactly 10 a minute."""
    env = {"DARKROOM_RATE_LIMIT_CREATE": "10/minute", "WEB_CONCURRENCY": "2"}
    with running_stack(tmp_path, worker=False, env=env) as stack:
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(
                pool.map(
                    lambda _: stack.post(f"{API}/jobs/generate", json=BODY).status_code, range(30)
                )
            )
        assert codes.count(201) == 10, codes
        assert codes.count(429) == 20, codes
        booted = set(re.findall(r"Booting worker with pid: (\d+)", stack.log_text("web")))
        assert len(booted) == 2, "the limit held across two web processes"
        assert stack.get(f"{API}/jobs").json()["total"] == 10


def test_every_limited_answer_carries_the_headers(client: FlaskClient) -> None:
    job = create(client).get_json()
    first = client.get(job["status_url"])
    assert first.headers["X-RateLimit-Limit"] == "4"
    assert first.headers["X-RateLimit-Remaining"] == "3"
    assert "Retry-After" not in first.headers
    for _ in range(3):
        client.get(job["status_url"])
    refused = client.get(job["status_url"])
    assert refused.status_code == 429
    assert refused.get_json()["detail"] == "Rate limit exceeded: 4 per 1 minute"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert 0 < reset - time.time() <= 61
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # The listing and the webhook log read statuses too: the same bucket, spent.
    assert client.get(f"{API}/jobs").status_code == 429
    assert client.get(f"{API}/jobs/{job['id']}/webhooks").status_code == 429
    # Endpoints without a limit carry none of it.
    assert "X-RateLimit-Limit" not in client.get(f"{API}/models").headers


def test_a_broken_counter_store_lets_requests_through(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    from webapp import create_app

    instance = tmp_path / "broken"
    app = create_app({**app_config, "INSTANCE_PATH": str(instance)})
    (instance / "ratelimit.shm").mkdir()  # a directory cannot be mapped
    client = app.test_client()
    codes = [create(client).status_code for _ in range(5)]
    assert codes == [201] * 5
    assert "X-RateLimit-Limit" not in create(client).headers


def _redis_url() -> str | None:
    url = os.environ.get("DARKROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def test_with_redis_the_counters_live_in_redis(app_config: dict[str, Any], tmp_path: Path) -> None:
    """The scale-out path: REDIS_URL puts the counters where every machine sees them."""
    url = _redis_url()
    if url is None:
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    from webapp import create_app

    app = create_app({**app_config, "REDIS_URL": url, "INSTANCE_PATH": str(tmp_path / "i")})
    client = app.test_client()
    # A client address of its own, so that runs within the same minute do not share a bucket.
    me = {"REMOTE_ADDR": f"198.18.{os.getpid() % 250}.{int(time.time()) % 250}"}
    job = client.post(f"{API}/jobs/generate", json=BODY, environ_base=me).get_json()
    answers = [client.get(job["status_url"], environ_base=me) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Remaining"] == "3"
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    assert not (tmp_path / "i" / "ratelimit.shm").exists(), "nothing counted on this box"
    other = create_app({**app_config, "REDIS_URL": url, "INSTANCE_PATH": str(tmp_path / "j")})
    refused = other.test_client().get(job["status_url"], environ_base=me)
    assert refused.status_code == 429, "a second server sees the same counters"


def test_a_stuck_lock_holder_delays_requests_by_a_second_at_most(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    from webapp import create_app

    instance = tmp_path / "stuck"
    app = create_app({**app_config, "INSTANCE_PATH": str(instance)})
    client = app.test_client()
    assert create(client).status_code == 201  # the table exists now
    holder = os.open(instance / "ratelimit.shm", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # as a process stopped while holding it would
        started = time.monotonic()
        answer = create(client)
        assert answer.status_code == 201, "let through, not refused or failed"
        assert "X-RateLimit-Limit" not in answer.headers
        assert time.monotonic() - started < 5
    finally:
        os.close(holder)
    assert create(client).headers["X-RateLimit-Remaining"] == "1", "counting resumes"


def test_limits_are_declared_on_the_views_and_documented_where_they_apply(
    client: FlaskClient,
) -> None:
    """The limits are read off the views, so a renamed view or class keeps its limit; every
    limited API operation documents its 429, and only those do."""
    from webapp.ratelimit import declared_limits

    app = client.application
    declared = declared_limits(app)
    assert {route: rule for route, rule in declared.items() if route[1] != "HEAD"} == {
        ("jobs.JobGenerate", "POST"): ("RATE_LIMIT_CREATE", "create"),
        ("jobs.JobStatusView", "GET"): ("RATE_LIMIT_STATUS", "status"),
        ("jobs.Jobs", "GET"): ("RATE_LIMIT_STATUS", "status"),
        ("webhooks.JobWebhooks", "GET"): ("RATE_LIMIT_STATUS", "status"),
        ("webhooks.JobWebhookRedeliver", "POST"): ("RATE_LIMIT_CREATE", "create"),
        ("pages.create", "POST"): ("RATE_LIMIT_CREATE", "create"),
        ("pages.vary", "POST"): ("RATE_LIMIT_CREATE", "create"),
        ("pages.redeliver", "POST"): ("RATE_LIMIT_CREATE", "create"),
        ("pages.poll", "GET"): ("RATE_LIMIT_POLL", "poll"),
        ("pages.job_page", "GET"): ("RATE_LIMIT_POLL", "poll"),
        ("pages.gallery", "GET"): ("RATE_LIMIT_SEARCH", "search"),
        ("uploads.Uploads", "POST"): ("RATE_LIMIT_UPLOAD", "upload"),
        # The OpenAI face's generations and edits make jobs: the creation bucket.
        ("facade.generations", "POST"): ("RATE_LIMIT_CREATE", "create"),
        ("facade.edits", "POST"): ("RATE_LIMIT_CREATE", "create"),
    }
    spec = client.get(f"{API}/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "429" in operation.get("responses", {})
    }
    assert documented == {
        (f"{API}/jobs/generate", "POST"),
        (f"{API}/jobs/status/{{job_id}}", "GET"),
        (f"{API}/jobs", "GET"),
        (f"{API}/jobs/{{job_id}}/webhooks", "GET"),
        (f"{API}/jobs/{{job_id}}/webhooks/redeliver", "POST"),
        (f"{API}/uploads", "POST"),
    }
