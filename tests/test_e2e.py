"""End to end: the Procfile's web (gunicorn) and worker (huey_consumer), driven over HTTP."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from tests.helpers import GUIDE_STATUS_FIELDS
from tests.procs import API, TERMINAL, Stack, running_stack

pytestmark = pytest.mark.e2e

STEP_SECONDS = 0.2  # the demo model's pace per step in this module's worker
PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
GUIDE_MEDIA_FIELDS = {"id", "url", "type", "mime_type", "file_size_bytes", "width", "height"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Web and worker started together on an empty instance folder, shared by the module."""
    with running_stack(tmp_path_factory.mktemp("e2e"), step_seconds=STEP_SECONDS) as stack:
        stack.wait_for_worker(timeout=15)
        yield stack


def timestamp(value: str) -> datetime:
    """Parse the API's UTC timestamps (ISO 8601 with a Z)."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")


def follow(stack: Stack, job_ids: list[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    """Poll jobs until they end, checking that progress never goes backwards."""
    seen: dict[str, list[float]] = {job_id: [] for job_id in job_ids}
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(job_ids):
        assert time.monotonic() < deadline, f"jobs did not finish: {seen}\n{stack.logs()}"
        for job_id in job_ids:
            if job_id in done:
                continue
            body = stack.status(job_id)
            seen[job_id].append(body["progress"])
            if body["status"] in TERMINAL:
                done[job_id] = body
        time.sleep(0.05)
    for job_id, progress in seen.items():
        assert progress == sorted(progress), f"progress of {job_id} went backwards: {progress}"
    return done


def download(stack: Stack, url: str) -> requests.Response:
    """GET a file and check the headers every download carries."""
    response = stack.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    return response


def check_media(stack: Stack, item: dict[str, Any]) -> str:
    """Download a media item, its thumbnail and its details; check each; return the sha256."""
    assert item.keys() >= GUIDE_MEDIA_FIELDS, item
    assert item["type"] == "image"
    assert item["url"] == f"{stack.base_url}{API}/media/{item['id']}"

    response = download(stack, item["url"])
    data = response.content
    assert response.headers["Content-Type"] == item["mime_type"]
    assert len(data) == item["file_size_bytes"] == int(response.headers["Content-Length"])
    assert response.headers["Content-Disposition"].startswith("inline")
    assert f"{item['id']}{EXTENSIONS[item['mime_type']]}" in response.headers["Content-Disposition"]
    assert response.headers.get("ETag")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == PILLOW_FORMATS[item["mime_type"]]
        assert image.size == (item["width"], item["height"])
        image.load()  # the whole file decodes, not just its header
    digest = hashlib.sha256(data).hexdigest()

    thumb = download(stack, item["thumbnail_url"])
    assert thumb.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.format == "WEBP"
        image.load()
        assert max(image.size) == min(512, max(item["width"], item["height"]))
        ratio, thumb_ratio = item["width"] / item["height"], image.width / image.height
        assert abs(ratio - thumb_ratio) < 0.02 * ratio, (item, image.size)

    info_response = stack.get(f"{API}/media/{item['id']}/info")
    assert info_response.status_code == 200
    info = info_response.json()
    assert info["storage_url"] == item["url"]
    storage_url = urlsplit(info["storage_url"])
    assert storage_url.scheme == "http" and storage_url.netloc == f"127.0.0.1:{stack.port}"
    assert info["storage_url"].startswith(stack.env["DARKROOM_PUBLIC_URL"] + "/")
    assert not info["storage_path"].startswith("/") and ".." not in info["storage_path"]
    assert info["file_extension"] == EXTENSIONS[item["mime_type"]]
    assert info["sha256"] == digest
    for key in ("id", "type", "mime_type", "file_size_bytes", "width", "height"):
        assert info[key] == item[key], key
    return digest


def test_procfile_lines_on_an_empty_folder(tmp_path: Path) -> None:
    """Each Procfile line works on its own: $PORT, the instance folder, schema at start-up."""
    with Stack(tmp_path, step_seconds=0.05) as stack:
        assert list(stack.instance.iterdir()) == []  # nothing prepared: no `flask init`, no files
        stack.start_web()  # waits until /health/live answers on $PORT
        assert f"Listening at: http://0.0.0.0:{stack.port}" in stack.log_text("web")
        present = {p.name for p in stack.instance.iterdir()}
        assert {"darkroom.db", "huey.db", "media"} <= present
        tables = {name for (name,) in stack.db_rows("SELECT name FROM sqlite_master")}
        assert {"jobs", "media", "worker_beats", "alembic_version"} <= tables

        health = stack.get(f"{API}/health").json()
        assert health["services"] == {
            "database": True,
            "queue": True,
            "storage": True,
            "worker": False,
        }
        assert health["status"] == "degraded"

        job = stack.submit("a lighthouse at dawn", parameters={"width": 256, "height": 256})
        time.sleep(0.5)
        assert stack.status(job["id"])["status"] == "pending"  # nobody to run it yet

        stack.start_worker()
        # Well inside the 15-second beat: the worker reports once as it starts.
        health = stack.wait_for_worker(timeout=10)
        assert health["status"] == "healthy"
        assert all(health["services"].values())

        # The worker found the job in this folder's queue and wrote its file into this folder.
        body = stack.wait_terminal([job["id"]])[job["id"]]
        assert body["status"] == "completed", body
        assert stack.stored_media_ids() == {m["id"] for m in body["media"]}
        (beat_pid,) = {pid for (pid,) in stack.db_rows("SELECT pid FROM worker_beats")}
        assert beat_pid == stack.worker.pid
    assert not stack.leftovers()


def test_both_processes_started_together_share_the_instance_folder(service: Stack) -> None:
    """Started at once (as honcho does), both upgrade the same schema without a manual step."""
    present = {p.name for p in service.instance.iterdir()}
    assert {"darkroom.db", "huey.db", "media"} <= present
    tables = {name for (name,) in service.db_rows("SELECT name FROM sqlite_master")}
    assert {"jobs", "media", "worker_beats", "alembic_version"} <= tables
    for name in ("web", "worker"):
        log = service.log_text(name)
        assert "Traceback" not in log and "recovery failed" not in log, log


def test_health_shows_the_worker(service: Stack) -> None:
    """`GET /health` reports every service, the worker included, once the worker runs."""
    response = service.get(f"{API}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["services"] == {"database": True, "queue": True, "storage": True, "worker": True}
    assert body["version"] and body["environment"]
    timestamp(body["timestamp"])
    assert service.get(f"{API}/health/live").json() == {"status": "alive"}
    assert service.get(f"{API}/health/ready").status_code == 200


def test_jobs_complete_and_their_files_are_what_the_api_says(service: Stack) -> None:
    """Several kinds of job run to completion; every file decodes to what was reported."""
    requests_by_name = {
        "two outputs": {"num_outputs": 2, "width": 512, "height": 384},
        "jpg": {"output_format": "jpg", "output_quality": 80, "width": 320, "height": 480},
        "webp": {"output_format": "webp", "width": 640, "height": 640},
        "seed": {"seed": 424242},
        "16:9": {"aspect_ratio": "16:9"},
    }
    created = {}
    for name, parameters in requests_by_name.items():
        answer = service.submit(f"test job: {name}", parameters=parameters)
        assert answer["status"] == "pending"
        assert answer["status_url"] == f"{API}/jobs/status/{answer['id']}"
        assert isinstance(answer["estimated_completion_time"], int)
        assert answer["estimated_completion_time"] >= 1
        timestamp(answer["created_at"])
        created[name] = answer

    done = follow(service, [c["id"] for c in created.values()])

    for name, answer in created.items():
        body = done[answer["id"]]
        asked = requests_by_name[name]
        assert body.keys() >= GUIDE_STATUS_FIELDS
        assert body["status"] == "completed", body
        assert body["progress"] == 100.0
        assert body["retry_count"] == 0
        assert body["error_message"] is None
        assert body["prompt"] == f"test job: {name}"
        assert {k: body["parameters"][k] for k in asked} == asked
        assert isinstance(body["parameters"]["seed"], int)  # recorded, to reproduce later
        created_at, started_at = timestamp(body["created_at"]), timestamp(body["started_at"])
        completed_at = timestamp(body["completed_at"])
        assert created_at <= started_at <= completed_at <= timestamp(body["updated_at"])
        assert isinstance(body["duration_seconds"], float) and body["duration_seconds"] >= 0

        media = body["media"]
        assert len(media) == asked.get("num_outputs", 1)
        expected_mime = {"jpg": "image/jpeg", "webp": "image/webp"}.get(
            asked.get("output_format", "png"), "image/png"
        )
        digests = set()
        for item in media:
            assert item["mime_type"] == expected_mime
            if "width" in asked:
                assert (item["width"], item["height"]) == (asked["width"], asked["height"])
            digests.add(check_media(service, item))
        assert len(digests) == len(media)  # two outputs are two different pictures

    assert done[created["seed"]["id"]]["parameters"]["seed"] == 424242
    wide = done[created["16:9"]["id"]]
    assert "width" not in wide["parameters"] and "height" not in wide["parameters"]
    (item,) = wide["media"]
    assert abs(item["width"] / item["height"] - 16 / 9) < 0.02, item
    assert wide["provider_parameters"]["aspect_ratio"] == "16:9"


def test_same_prompt_seed_and_size_give_identical_files(service: Stack) -> None:
    """The demo model is deterministic: same inputs, same bytes; another seed, other bytes."""
    prompt = "a paper boat on a puddle"
    size = {"width": 384, "height": 256}
    ids = [
        service.submit(prompt, parameters={"seed": 7, **size})["id"],
        service.submit(prompt, parameters={"seed": 7, **size})["id"],
        service.submit(prompt, parameters={"seed": 8, **size})["id"],
    ]
    done = service.wait_terminal(ids)
    digests = []
    for job_id in ids:
        assert done[job_id]["status"] == "completed", done[job_id]
        (item,) = done[job_id]["media"]
        digests.append(hashlib.sha256(download(service, item["url"]).content).hexdigest())
    assert digests[0] == digests[1]
    assert digests[2] != digests[0]


def test_cancelling_a_running_job_sticks(service: Stack) -> None:
    """A running job cancelled over HTTP stays cancelled, without media, past its natural end."""
    steps = 50  # ~10 s at STEP_SECONDS
    job_id = service.submit(
        "a very slow sunrise",
        parameters={"num_inference_steps": steps, "width": 256, "height": 256},
    )["id"]

    def running() -> dict[str, Any] | None:
        body = service.status(job_id)
        return body if body["status"] == "processing" and body["progress"] > 0 else None

    before = service.wait_until("the job to be running", running, timeout=15)
    seen_running = time.monotonic()
    assert before["progress"] < 50

    response = service.delete(f"{API}/jobs/{job_id}")
    assert response.status_code == 204, response.text
    assert response.content == b""
    cancelled = service.status(job_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None
    assert cancelled["media"] is None

    # Keep watching until well after the worker would have finished the job.
    natural_end = seen_running + steps * STEP_SECONDS + 1.5
    while time.monotonic() < natural_end:
        body = service.status(job_id)
        assert body["status"] == "cancelled", body
        assert body["media"] is None
        assert body["progress"] == cancelled["progress"]  # the fence refused later progress
        assert body["completed_at"] == cancelled["completed_at"]
        time.sleep(0.25)
    # The worker noticed at its next progress report and gave up without writing a file.
    assert f"job {job_id} was cancelled or taken over; stopping" in service.log_text("worker")
    listing = service.get(f"{API}/jobs", params={"per_page": 100}).json()
    known = {m["id"] for job in listing["jobs"] for m in job["media"]}
    assert service.stored_media_ids() == known

    again = service.delete(f"{API}/jobs/{job_id}")
    assert again.status_code == 409
    body = again.json()
    assert body["detail"] == "Cannot cancel job in cancelled state"
    assert body["request_id"] == again.headers["X-Request-ID"]


class MediaGenClient:
    """The API guide's Python client, with `requests` in place of async `httpx`."""

    def __init__(self, base_url: str = "http://localhost:8000") -> None:
        self.base_url = base_url
        self.client = requests.Session()

    def create_job(
        self, prompt: str, parameters: dict | None = None, webhook_url: str | None = None
    ) -> dict:
        """Create a new media generation job."""
        data: dict[str, Any] = {"prompt": prompt}
        if parameters:
            data["parameters"] = parameters
        if webhook_url:
            data["webhook_url"] = webhook_url
        response = self.client.post(f"{self.base_url}/api/v1/jobs/generate", json=data)
        response.raise_for_status()
        return response.json()

    def get_job_status(self, job_id: str) -> dict:
        """Get job status."""
        response = self.client.get(f"{self.base_url}/api/v1/jobs/status/{job_id}")
        response.raise_for_status()
        return response.json()

    def wait_for_completion(
        self, job_id: str, timeout: float = 600, poll_interval: float = 5
    ) -> dict:
        """Wait for job completion."""
        start_time = time.time()
        while time.time() - start_time < timeout:
            status = self.get_job_status(job_id)
            if status["status"] in ["completed", "failed", "cancelled"]:
                return status
            time.sleep(poll_interval)
        raise TimeoutError(f"Job {job_id} did not complete within {timeout} seconds")

    def download_media(self, media_id: str, output_path: Path) -> None:
        """Download generated media."""
        response = self.client.get(f"{self.base_url}/api/v1/media/{media_id}")
        response.raise_for_status()
        with open(output_path, "wb") as f:
            f.write(response.content)


def test_the_api_guides_python_client_flow(service: Stack, tmp_path: Path) -> None:
    """The guide's client example works as written against the running service."""
    client = MediaGenClient(service.base_url)
    job = client.create_job(
        prompt="A majestic eagle soaring over mountains",
        parameters={"aspect_ratio": "16:9", "output_quality": 90},
    )
    result = client.wait_for_completion(job["id"], timeout=30, poll_interval=0.2)
    assert result["status"] == "completed", result
    media_id = result["media"][0]["id"]
    output = tmp_path / "generated_eagle.png"
    client.download_media(media_id, output)
    with Image.open(output) as image:
        assert image.format == "PNG"
        assert image.size == (result["media"][0]["width"], result["media"][0]["height"])
        assert abs(image.width / image.height - 16 / 9) < 0.02
