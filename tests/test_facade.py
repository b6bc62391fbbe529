"""The OpenAI-compatible face, driven by OpenAI's own Python SDK against the Procfile's real
web and worker processes: generations in both answer formats, an edit with a mask, the model
list, each error as the SDK's own exception, accounts, and many clients waiting at once."""

from __future__ import annotations

import base64
import io
import json
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from PIL import Image

from tests.fake_openai import FakeOpenAI
from tests.procs import Stack, running_stack
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e

STEP_SECONDS = 0.02


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"DARKROOM_OPENAI_WAIT_SECONDS": "20", "DARKROOM_RATE_LIMIT_CREATE": "100000/minute"}
    with running_stack(tmp_path_factory.mktemp("facade"), step_seconds=STEP_SECONDS, env=env) as s:
        s.wait_for_worker()
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="any-key-works", max_retries=0)


def picture(size: tuple[int, int] = (256, 256)) -> bytes:
    image = Image.new("RGB", size, (30, 120, 200))
    image.paste((250, 250, 250), (20, 20, 100, 100))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def openai_mask(size: tuple[int, int] = (256, 256)) -> bytes:
    """OpenAI's convention: transparent where the picture may change (the left half)."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def job_of(stack: Stack, created_after: float) -> dict[str, Any]:
    """The newest job (the one the face made), as the guide's API shows it."""
    listing = stack.get("/api/v1/jobs?per_page=1").json()
    return stack.status(listing["jobs"][0]["id"])


def test_generate_answers_urls_that_serve_the_pictures(stack: Stack, client: openai.OpenAI) -> None:
    started = time.time()
    result = client.images.generate(prompt="a lighthouse at night", model="demo", size="256x192")
    assert result.created >= int(started) - 1
    (item,) = result.data
    assert item.url and item.url.startswith(stack.base_url)
    downloaded = requests.get(item.url, timeout=10)
    assert downloaded.status_code == 200
    assert Image.open(io.BytesIO(downloaded.content)).size == (256, 192)
    job = job_of(stack, started)
    assert job["status"] == "completed" and job["prompt"] == "a lighthouse at night"
    assert (job["parameters"]["width"], job["parameters"]["height"]) == (256, 192)


def test_generate_answers_base64_and_several_pictures(client: openai.OpenAI) -> None:
    result = client.images.generate(
        prompt="three moons", n=2, size="128x128", response_format="b64_json",
        output_format="webp", output_compression=70,
    )  # fmt: skip
    assert len(result.data) == 2
    for item in result.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json or "")))
        assert (image.format, image.size) == ("WEBP", (128, 128))
    assert result.output_format == "webp"


def test_the_default_model_answers_when_none_is_named(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a quiet harbour", size="128x128")
    assert result.data[0].url


def test_edit_with_a_mask_keeps_the_masked_part(stack: Stack, client: openai.OpenAI) -> None:
    started = time.time()
    result = client.images.edit(
        model="demo",
        image=("photo.png", picture(), "image/png"),
        mask=("mask.png", openai_mask(), "image/png"),
        prompt="a storm over the sea",
        response_format="b64_json",
    )
    edited = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or ""))).convert("RGB")
    source = Image.open(io.BytesIO(picture())).convert("RGB")
    assert edited.size == source.size == (256, 256)
    # Opaque in OpenAI's mask (the right half): kept exactly; transparent: repainted.
    right = (130, 0, 256, 256)
    assert list(edited.crop(right).getdata()) == list(source.crop(right).getdata())
    assert list(edited.crop((0, 0, 120, 256)).getdata()) != list(
        source.crop((0, 0, 120, 256)).getdata()
    )
    job = job_of(stack, started)
    assert [i["role"] for i in job["inputs"]] == ["image", "mask"]


def test_models_are_listed_in_openais_shape(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert "demo" in [m.id for m in models.data]
    assert client.models.retrieve("demo").owned_by == "darkroom-demo"


@pytest.mark.parametrize(
    ("call", "exception", "param"),
    [
        (lambda c: c.images.generate(prompt="x", model="no-such-model"), openai.NotFoundError,
         "model"),
        (lambda c: c.images.generate(prompt="", model="demo"), openai.BadRequestError, "prompt"),
        (lambda c: c.images.generate(prompt="x", n=9), openai.BadRequestError, "n"),
        (lambda c: c.images.generate(prompt="x", size="huge"), openai.BadRequestError, "size"),
        (lambda c: c.images.generate(prompt="x", size="9000x9000"), openai.BadRequestError,
         "size"),
        (lambda c: c.models.retrieve("no-such-model"), openai.NotFoundError, None),
    ],
)  # fmt: skip
def test_errors_are_the_sdks_own_exceptions(
    client: openai.OpenAI, call: Any, exception: type[Exception], param: str | None
) -> None:
    with pytest.raises(exception) as caught:
        call(client)
    body = caught.value.body  # type: ignore[attr-defined]
    assert set(body) >= {"message", "type", "param", "code"}
    assert body["message"]
    if param:
        assert body["param"] == param


def test_errors_never_take_the_guides_shape(stack: Stack) -> None:
    for response in (
        requests.post(f"{stack.base_url}/v1/images/generations", data="x", timeout=10),
        requests.get(f"{stack.base_url}/v1/nothing-here", timeout=10),
        requests.delete(f"{stack.base_url}/v1/models", timeout=10),
        requests.post(
            f"{stack.base_url}/v1/images/generations",
            json={"prompt": "x"},
            headers={"Origin": "https://evil.example"},
            timeout=10,
        ),
    ):
        assert response.status_code in (400, 403, 404, 405, 415), response.text
        assert set(response.json()) == {"error"}, response.text
        assert "request_id" not in response.text
    # And the guide's API never answers in OpenAI's shape.
    guide = requests.get(f"{stack.base_url}/api/v1/jobs/status/nothing", timeout=10)
    assert guide.status_code == 404 and set(guide.json()) == {"detail", "request_id"}


def test_a_wait_that_runs_out_is_a_504_and_a_rate_limit_a_429(tmp_path: Path) -> None:
    """No worker and a short wait: the 504 names the job, which keeps its place; past the
    creation limit the SDK raises its own RateLimitError."""
    env = {"DARKROOM_OPENAI_WAIT_SECONDS": "0.5", "DARKROOM_RATE_LIMIT_CREATE": "2/minute"}
    with running_stack(tmp_path, worker=False, env=env) as tight:
        client = openai.OpenAI(base_url=f"{tight.base_url}/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.images.generate(prompt="never drawn", model="demo")
        assert caught.value.status_code == 504
        job_id = tight.get("/api/v1/jobs").json()["jobs"][0]["id"]
        assert job_id in caught.value.body["message"]  # type: ignore[index]
        assert tight.status(job_id)["status"] == "pending", "the job keeps its place"
        with pytest.raises(openai.InternalServerError):
            client.images.generate(prompt="second", model="demo")  # 2 of 2
        with pytest.raises(openai.RateLimitError) as limited:
            client.images.generate(prompt="third", model="demo")
        assert limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        assert int(limited.value.response.headers["Retry-After"]) >= 1


def test_accounts_on_take_a_darkroom_key_with_the_generate_scope(tmp_path: Path) -> None:
    with running_stack(tmp_path, env={"DARKROOM_AUTH": "on"}) as site:
        site.wait_for_worker()
        read_only, generating = site.provision(
            [("owner", True)], [("owner", ("read",), None), ("owner", ("generate",), None)],
            "a long password here",
        )  # fmt: skip

        def client(api_key: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=f"{site.base_url}/v1", api_key=api_key, max_retries=0)

        for wrong in ("sk-not-a-darkroom-key", "dr_" + "x" * 43):
            with pytest.raises(openai.AuthenticationError):
                client(wrong).images.generate(prompt="x", model="demo")
        with pytest.raises(openai.PermissionDeniedError):
            client(read_only).images.generate(prompt="x", model="demo")
        result = client(generating).images.generate(
            prompt="a signed picture", model="demo", size="128x128"
        )
        url = result.data[0].url or ""
        assert "signature=" in url, "accounts on: the URL is signed"
        assert requests.get(url, timeout=10).status_code == 200  # no key needed to fetch it


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose demo jobs take a second or two: time to go away, or to cancel."""
    with running_stack(tmp_path_factory.mktemp("slow"), step_seconds=0.4) as s:
        s.wait_for_worker()
        yield s


def job_named(stack: Stack, prompt: str) -> str:
    def find() -> str | None:
        items = stack.get("/api/v1/jobs").json()["jobs"]
        return next((j["id"] for j in items if j["prompt"] == prompt), None)

    return str(stack.wait_until(f"the job {prompt!r}", find))


def test_a_client_that_goes_away_leaves_its_job_running(slow: Stack) -> None:
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{slow.base_url}/v1/images/generations",
            json={"prompt": "patience", "model": "demo", "size": "128x128"},
            timeout=0.5,
        )
    job_id = job_named(slow, "patience")
    assert slow.wait_terminal([job_id])[job_id]["status"] == "completed"


def test_sixteen_waiting_clients_do_not_starve_the_api(stack: Stack) -> None:
    def list_time() -> float:
        started = time.perf_counter()
        assert stack.get("/api/v1/jobs?per_page=20").status_code == 200
        return time.perf_counter() - started

    quiet = [list_time() for _ in range(10)]
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    with ThreadPoolExecutor(16) as pool:
        waits = [
            pool.submit(client.images.generate, prompt=f"wait {i}", model="demo", size="128x128")
            for i in range(16)
        ]
        time.sleep(0.2)  # the waits are in flight
        busy = [list_time() for _ in range(10)]
        results = [w.result(timeout=60) for w in waits]
    assert all(r.data and r.data[0].url for r in results)
    # The listing keeps its usual time while sixteen requests wait.
    assert statistics.median(busy) < max(0.25, 5 * statistics.median(quiet)), (quiet, busy)


def test_a_failed_generation_is_an_error_with_the_jobs_message(slow: Stack) -> None:
    """A job whose picture never comes (it was cancelled) answers 5xx with its message."""
    client = openai.OpenAI(base_url=f"{slow.base_url}/v1", api_key="k", max_retries=0)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            client.images.generate(prompt="cancel me", model="demo", size="128x128")
        except openai.APIStatusError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    job_id = job_named(slow, "cancel me")
    assert slow.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    thread.join(30)
    error = outcome.get("error")
    assert error is not None and error.status_code in (500, 502)
    assert job_id in error.body["message"]  # type: ignore[index]


@dataclass
class Upstream:
    """A stack in front of a fake OpenAI, whose face's jobs send webhooks to a receiver."""

    site: Stack
    hook: Receiver
    openai_fake: FakeOpenAI

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.site.base_url}/v1", api_key="k", max_retries=0)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with Receiver() as hook, FakeOpenAI("sk-test-" + "k" * 20) as fake:
        env = {
            "DARKROOM_OPENAI_WEBHOOK_URL": hook.url("/openai-jobs"),
            "DARKROOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "OPENAI_API_KEY": fake.key,
            "OPENAI_BASE_URL": fake.base_url,
        }
        with running_stack(tmp_path_factory.mktemp("upstream"), env=env) as site:
            site.wait_for_worker()
            yield Upstream(site, hook, fake)


def test_jobs_made_through_the_face_send_their_webhooks(upstream: Upstream) -> None:
    upstream.client().images.generate(
        prompt="tell the hook", model="demo", size="128x128", user="u7"
    )
    job_id = job_named(upstream.site, "tell the hook")

    def delivered() -> Any:
        for received in upstream.hook.requests:
            payload = json.loads(received.body)
            if payload.get("job_id") == job_id:
                return received, payload
        return None

    received, payload = upstream.site.wait_until("the job's webhook", delivered)
    assert received.path == "/openai-jobs"
    assert payload["status"] == "completed" and payload["media_url"]
    assert upstream.site.status(job_id)["metadata"] == {"openai_user": "u7"}


def test_openais_own_models_answer_through_the_face_with_usage_and_revised_prompt(
    upstream: Upstream,
) -> None:
    """Darkroom in front of OpenAI: the face's answer carries what OpenAI reported."""
    client = upstream.client()
    dalle = client.images.generate(model="dall-e-3", prompt="a red kite")
    assert dalle.data[0].revised_prompt
    gpt = client.images.generate(
        model="gpt-image-1", prompt="a blue kite", size="1024x1024", response_format="b64_json"
    )
    assert gpt.usage is not None and gpt.usage.total_tokens > 0
    picture = Image.open(io.BytesIO(base64.b64decode(gpt.data[0].b64_json or "")))
    assert picture.size == (1024, 1024)
