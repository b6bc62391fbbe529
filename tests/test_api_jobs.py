"""The job endpoints' contract: submit, status, list, cancel, errors and request ids."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from tests.helpers import GUIDE_STATUS_FIELDS, queued_job_ids, run_queue, submit
from webapp.api.schemas import JobSchema
from webapp.extensions import db
from webapp.models import Job, Media

API = "/api/v1"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SMALL = {"width": 128, "height": 128, "num_inference_steps": 1}


def parse_time(value: str) -> datetime:
    assert ISO_Z.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def status_of(client: FlaskClient, job_id: str) -> dict:
    response = client.get(f"{API}/jobs/status/{job_id}")
    assert response.status_code == 200
    return response.get_json()


def assert_detail_error(response, status: int, detail: str) -> None:
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body == {"detail": detail, "request_id": response.headers["X-Request-ID"]}


# -- submit -------------------------------------------------------------------------------


def test_submit_answers_201_with_location_and_the_guides_body(client: FlaskClient) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = client.post(
        f"{API}/jobs/generate",
        json={
            "prompt": "A beautiful sunset over mountains with vibrant colors",
            "parameters": {"width": 1024, "height": 1024, "num_inference_steps": 4},
        },
    )
    assert response.status_code == 201
    body = response.get_json()
    assert {"id", "status", "created_at", "status_url", "estimated_completion_time"} <= set(body)
    assert UUID.match(body["id"])
    assert body["status"] == "pending"
    assert body["status_url"] == f"/api/v1/jobs/status/{body['id']}"
    assert response.headers["Location"] == body["status_url"]
    created = parse_time(body["created_at"])
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
    eta = body["estimated_completion_time"]
    assert isinstance(eta, int) and not isinstance(eta, bool) and eta > 0


def test_status_of_a_pending_job_has_the_guides_shape(client: FlaskClient) -> None:
    parameters = {"width": 1024, "height": 1024, "num_inference_steps": 4}
    prompt = "A beautiful sunset over mountains with vibrant colors"
    created = submit(client, prompt, parameters=parameters)
    job = status_of(client, created["id"])
    guide_keys = GUIDE_STATUS_FIELDS
    assert guide_keys <= set(job)
    assert job["id"] == created["id"]
    assert job["status"] == "pending"
    assert job["prompt"] == prompt
    assert {k: v for k, v in job["parameters"].items() if k != "seed"} == parameters
    assert job["created_at"] == created["created_at"]
    assert parse_time(job["updated_at"]) >= parse_time(job["created_at"])
    assert job["started_at"] is None
    assert job["completed_at"] is None
    assert job["duration_seconds"] is None
    assert job["retry_count"] == 0
    assert job["error_message"] is None
    assert job["media"] is None
    assert job["progress"] == 0.0 and isinstance(job["progress"], float)


def test_status_of_a_completed_job_has_the_guides_shape(client: FlaskClient) -> None:
    created = submit(client, parameters={"width": 256, "height": 192, "num_inference_steps": 2})
    assert run_queue() == 1
    job = status_of(client, created["id"])
    assert job["status"] == "completed"
    assert job["progress"] == 100.0 and isinstance(job["progress"], float)
    assert job["retry_count"] == 0
    assert job["error_message"] is None
    started = parse_time(job["started_at"])
    completed = parse_time(job["completed_at"])
    assert parse_time(job["created_at"]) <= started <= completed
    assert parse_time(job["updated_at"]) >= started
    assert isinstance(job["duration_seconds"], float)
    assert 0 <= job["duration_seconds"] < 60
    assert isinstance(job["media"], list) and len(job["media"]) == 1
    item = job["media"][0]
    assert {"id", "url", "type", "mime_type", "file_size_bytes", "width", "height"} <= set(item)
    assert UUID.match(item["id"])
    assert item["url"] == f"http://darkroom.test/api/v1/media/{item['id']}"
    assert item["type"] == "image"
    assert item["mime_type"] == "image/png"
    assert (item["width"], item["height"]) == (256, 192)
    download = client.get(urlsplit(item["url"]).path)
    assert download.status_code == 200
    assert item["file_size_bytes"] == len(download.data) > 0


def test_status_of_an_unknown_job_is_404(client: FlaskClient) -> None:
    response = client.get(f"{API}/jobs/status/00000000-0000-4000-8000-000000000000")
    assert_detail_error(response, 404, "Job not found")


@pytest.mark.parametrize("job_id", ["not-a-uuid", "0", "..", "%2e%2e", "a" * 300])
def test_status_of_malformed_ids_is_404(client: FlaskClient, job_id: str) -> None:
    assert_detail_error(client.get(f"{API}/jobs/status/{job_id}"), 404, "Job not found")


# -- listing ------------------------------------------------------------------------------


@pytest.fixture
def twenty_five(client: FlaskClient) -> list[str]:
    """25 pending jobs, in submission order."""
    return [submit(client, f"job number {i}")["id"] for i in range(25)]


def test_listing_pages(client: FlaskClient, twenty_five: list[str]) -> None:
    first = client.get(f"{API}/jobs?page=1&per_page=20")
    assert first.status_code == 200
    page1 = first.get_json()
    assert len(page1["jobs"]) == 20
    assert page1["total"] == 25
    assert page1["page"] == 1 and page1["per_page"] == 20
    assert page1["has_next"] is True and page1["has_prev"] is False
    page2 = client.get(f"{API}/jobs?page=2&per_page=20").get_json()
    assert len(page2["jobs"]) == 5
    assert page2["total"] == 25 and page2["page"] == 2
    assert page2["has_next"] is False and page2["has_prev"] is True
    ids = [j["id"] for j in page1["jobs"] + page2["jobs"]]
    assert ids == list(reversed(twenty_five)), "newest first, no overlap, nothing missing"
    beyond = client.get(f"{API}/jobs?page=3&per_page=20").get_json()
    assert beyond["jobs"] == [] and beyond["total"] == 25 and beyond["has_next"] is False


def test_listing_defaults_to_twenty_per_page(client: FlaskClient, twenty_five: list[str]) -> None:
    page = client.get(f"{API}/jobs").get_json()
    assert page["page"] == 1 and page["per_page"] == 20 and len(page["jobs"]) == 20


@pytest.mark.parametrize("per_page", [1, 7, 100])
def test_listing_honours_per_page(
    client: FlaskClient, twenty_five: list[str], per_page: int
) -> None:
    page = client.get(f"{API}/jobs?per_page={per_page}").get_json()
    assert len(page["jobs"]) == min(per_page, 25)
    assert page["per_page"] == per_page
    assert page["has_next"] is (per_page < 25)


def test_listing_item_shape(client: FlaskClient) -> None:
    created = submit(client, "a listed job", parameters=SMALL)
    run_queue()
    page = client.get(f"{API}/jobs?page=1&per_page=20&status=completed").get_json()
    assert page["total"] == 1 and page["has_next"] is False and page["has_prev"] is False
    item = page["jobs"][0]
    assert {"id", "status", "prompt", "created_at", "completed_at", "media"} <= set(item)
    assert item["id"] == created["id"]
    assert item["status"] == "completed"
    assert item["prompt"] == "a listed job"
    parse_time(item["created_at"])
    parse_time(item["completed_at"])
    [media] = item["media"]
    assert set(media) >= {"id", "url", "type"}
    assert media["url"] == f"/api/v1/media/{media['id']}"
    assert media["type"] == "image"
    assert client.get(media["url"]).status_code == 200


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("per_page=0", ["query", "per_page"]),
        ("per_page=101", ["query", "per_page"]),
        ("per_page=x", ["query", "per_page"]),
        ("per_page=-5", ["query", "per_page"]),
        ("per_page=2.5", ["query", "per_page"]),
        ("page=0", ["query", "page"]),
        ("page=-1", ["query", "page"]),
        ("page=abc", ["query", "page"]),
        ("status=done", ["query", "status"]),
        ("status=COMPLETED", ["query", "status"]),
        ("status=", ["query", "status"]),
    ],
)
def test_listing_refuses_bad_query(client: FlaskClient, query: str, loc: list[str]) -> None:
    response = client.get(f"{API}/jobs?{query}")
    assert response.status_code == 422
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert len(body["detail"]) == 1
    error = body["detail"][0]
    assert set(error) == {"type", "loc", "msg", "input"}
    assert error["loc"] == loc
    assert error["input"] == query.split("=", 1)[1]


def test_listing_filters_by_status(client: FlaskClient) -> None:
    done = [submit(client, f"done {i}", parameters=SMALL)["id"] for i in range(2)]
    assert run_queue() == 2
    waiting = [submit(client, f"waiting {i}")["id"] for i in range(3)]
    assert client.delete(f"{API}/jobs/{waiting[0]}").status_code == 204
    expected = {
        "completed": list(reversed(done)),
        "pending": list(reversed(waiting[1:])),
        "cancelled": [waiting[0]],
        "failed": [],
        "processing": [],
        "retrying": [],
    }
    for status, ids in expected.items():
        page = client.get(f"{API}/jobs?status={status}").get_json()
        assert [j["id"] for j in page["jobs"]] == ids, status
        assert page["total"] == len(ids)
        assert all(j["status"] == status for j in page["jobs"])
    assert client.get(f"{API}/jobs").get_json()["total"] == 5


def test_listing_ignores_unknown_query_keys(client: FlaskClient) -> None:
    submit(client)
    response = client.get(f"{API}/jobs?_=1700000000&page=1")
    assert response.status_code == 200
    assert response.get_json()["total"] == 1


# -- cancel -------------------------------------------------------------------------------


def test_cancel_pending_job(client: FlaskClient) -> None:
    created = submit(client, parameters=SMALL)
    response = client.delete(f"{API}/jobs/{created['id']}")
    assert response.status_code == 204
    assert response.data == b""
    job = status_of(client, created["id"])
    assert job["status"] == "cancelled"
    completed_at = parse_time(job["completed_at"])
    assert completed_at >= parse_time(job["created_at"])
    assert job["media"] is None
    # The queued message still runs, but a cancelled job never starts or changes again.
    run_queue()
    after = status_of(client, created["id"])
    assert after["status"] == "cancelled"
    assert after["media"] is None
    assert after["started_at"] is None
    assert after["completed_at"] == job["completed_at"]


def test_cancel_twice_is_409(client: FlaskClient) -> None:
    created = submit(client)
    assert client.delete(f"{API}/jobs/{created['id']}").status_code == 204
    again = client.delete(f"{API}/jobs/{created['id']}")
    assert_detail_error(again, 409, "Cannot cancel job in cancelled state")


def test_cancel_completed_job_is_409(client: FlaskClient) -> None:
    created = submit(client, parameters=SMALL)
    run_queue()
    response = client.delete(f"{API}/jobs/{created['id']}")
    assert_detail_error(response, 409, "Cannot cancel job in completed state")
    job = status_of(client, created["id"])
    assert job["status"] == "completed" and len(job["media"]) == 1


def test_cancel_unknown_job_is_404(client: FlaskClient) -> None:
    response = client.delete(f"{API}/jobs/00000000-0000-4000-8000-000000000000")
    assert_detail_error(response, 404, "Job not found")


# -- request ids and error shapes --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/status/00000000-0000-4000-8000-000000000000"),
        ("POST", "/api/v1/jobs/generate"),
        ("GET", "/api/v1/nope"),
    ],
)
def test_request_id_is_echoed_when_sent(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": "trace-abc.123:7"})
    assert response.headers["X-Request-ID"] == "trace-abc.123:7"
    if response.status_code >= 400:
        assert response.get_json()["request_id"] == "trace-abc.123:7"


def test_request_id_is_generated_per_request_when_not_sent(client: FlaskClient) -> None:
    ids = []
    for _ in range(3):
        response = client.get(f"{API}/jobs/status/unknown")
        assert response.status_code == 404
        header = response.headers["X-Request-ID"]
        assert header and header == response.get_json()["request_id"]
        ids.append(header)
    assert len(set(ids)) == 3, "each request gets its own id"


def test_request_id_does_not_leak_between_requests(client: FlaskClient) -> None:
    first = client.get(f"{API}/jobs", headers={"X-Request-ID": "first-request"})
    second = client.get(f"{API}/jobs")
    assert first.headers["X-Request-ID"] == "first-request"
    assert second.headers["X-Request-ID"] != "first-request"


@pytest.mark.parametrize(
    "sent",
    ["has spaces in it", "x" * 129, "<script>", "semi;colon", "ünïcode"],
)
def test_unsafe_request_id_is_replaced(client: FlaskClient, sent: str) -> None:
    response = client.get(f"{API}/jobs/status/unknown", headers={"X-Request-ID": sent})
    header = response.headers["X-Request-ID"]
    assert header != sent
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", header)
    assert response.get_json()["request_id"] == header


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/jobs/00000000-0000-4000-8000-000000000000"),
        ("GET", "/api/v1/jobs/generate"),
        ("DELETE", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs/status/00000000-0000-4000-8000-000000000000"),
    ],
)
def test_wrong_method_is_405_json(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"detail", "request_id"}
    assert method in body["detail"]
    assert response.headers.get("Allow")
    assert method not in response.headers["Allow"]


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/jobs/status/a/b", "/api/v2/jobs", "/api/"]
)
def test_unknown_api_path_is_404_json(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"detail", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_unhandled_error_is_500_json_without_traceback(app: Flask, client: FlaskClient) -> None:
    secret = "db password is hunter2"

    def explode() -> str:
        raise RuntimeError(secret)

    # A throwaway route that fails: this exercises the real error handler, nothing is mocked.
    app.add_url_rule("/api/v1/_test_explode", "test_explode", explode)
    captured = _Records()
    logger = logging.getLogger("webapp.errors")
    logger.addHandler(captured)
    try:
        response = client.get("/api/v1/_test_explode", headers={"X-Request-ID": "boom-1"})
    finally:
        logger.removeHandler(captured)
    assert response.status_code == 500
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == "Internal server error"
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == "boom-1" == response.headers["X-Request-ID"]
    text = response.get_data(as_text=True)
    assert secret not in text
    assert "Traceback" not in text and "RuntimeError" not in text
    # ...while the log keeps the traceback, tagged with the request id.
    errors = [r for r in captured.records if r.levelno >= logging.ERROR]
    assert errors, "the failure was not logged"
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in errors)
    assert any("boom-1" in r.getMessage() for r in errors)


def test_unhandled_error_on_a_page_is_html(app: Flask, client: FlaskClient) -> None:
    def explode() -> str:
        raise RuntimeError("page secret")

    app.add_url_rule("/_test_explode_page", "test_explode_page", explode)
    response = client.get("/_test_explode_page")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "page secret" not in text and "Traceback" not in text


# -- estimated completion time -----------------------------------------------------------


def test_estimate_grows_with_the_queue_ahead(client: FlaskClient) -> None:
    alone = submit(client)["estimated_completion_time"]
    for i in range(10):
        submit(client, f"ahead {i}")
    behind = submit(client)["estimated_completion_time"]
    assert behind > alone > 0


def _set_durations(seconds: list[float]) -> None:
    """Give the completed jobs these run times (newest first), as if they had taken so long."""
    completed = db.session.scalars(
        db.select(Job).where(Job.status == "completed").order_by(Job.completed_at.desc())
    ).all()
    assert len(completed) == len(seconds)
    for job, duration in zip(completed, seconds, strict=True):
        job.started_at = job.completed_at - timedelta(seconds=duration)
    db.session.commit()


def test_estimate_reflects_recent_durations(client: FlaskClient) -> None:
    no_history = submit(client, parameters=SMALL)["estimated_completion_time"]
    submit(client, parameters=SMALL)
    assert run_queue() == 2
    assert queued_job_ids() == []

    _set_durations([30.0, 50.0])
    slow_job = submit(client)
    slow = slow_job["estimated_completion_time"]
    # Cancel it, so the next job is alone in the queue again.
    assert client.delete(f"{API}/jobs/{slow_job['id']}").status_code == 204

    _set_durations([4.0, 6.0])
    fast = submit(client)["estimated_completion_time"]

    # Alone in the queue, a job takes about as long as recent jobs did.
    assert 40 <= slow <= 80
    assert 5 <= fast <= 10
    assert slow > fast
    assert no_history != slow


# -- the status body is built without marshmallow; JobSchema documents it ----------------


def schema_dump(job_id: str) -> dict:
    """What flask-smorest would answer for the job through `JobSchema`."""
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    return json.loads(json.dumps(JobSchema().dump(job)))


def test_status_body_equals_the_documented_schema_for_every_kind_of_job(
    app: Flask, client: FlaskClient
) -> None:
    done = submit(client, "two outputs", parameters={"width": 128, "height": 160, "num_outputs": 2})
    expiring = submit(client, "expires")
    purged = submit(client, "purged")
    assert run_queue() == 3
    pending = submit(client, "waiting", metadata={"user": "u1", "tags": ["a", "b"]})
    failed = submit(client, "fails")
    cancelled = submit(client, "cancelled")
    assert client.delete(f"{API}/jobs/{cancelled['id']}").status_code == 204
    # The test's app context (and session) is the one the requests run in.
    db.session.rollback()
    past = datetime.now(UTC) - timedelta(days=1)
    db.session.execute(update(Media).where(Media.job_id == expiring["id"]).values(expires_at=past))
    db.session.execute(update(Media).where(Media.job_id == purged["id"]).values(purged_at=past))
    db.session.execute(
        update(Job)
        .where(Job.id == failed["id"])
        .values(
            status="failed",
            error_message="upstream refused",
            error_details={"code": 422, "why": ["x"]},
            retry_count=3,
            progress=37.5,
        )
    )
    db.session.commit()
    for created in (pending, done, expiring, purged, failed, cancelled):
        answer = client.get(f"{API}/jobs/status/{created['id']}")
        assert answer.status_code == 200
        assert answer.get_json() == schema_dump(created["id"]), created["id"]

    body = client.get(f"{API}/jobs/status/{done['id']}").get_json()
    assert [m["height"] for m in body["media"]] == [160, 160] and not body["media"][0]["expired"]
    assert client.get(f"{API}/jobs/status/{expiring['id']}").get_json()["media"][0]["expired"]
    assert client.get(f"{API}/jobs/status/{purged['id']}").get_json()["media"][0]["expired"]
    assert client.get(f"{API}/jobs/status/{failed['id']}").get_json()["error_details"] == {
        "code": 422,
        "why": ["x"],
    }
    assert client.get(f"{API}/jobs/status/{pending['id']}").get_json()["metadata"] == {
        "user": "u1",
        "tags": ["a", "b"],
    }
