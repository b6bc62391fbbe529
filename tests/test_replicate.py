"""The `replicate` provider against a fake Replicate on loopback (tests/fake_replicate.py).

Jobs run in this process as the consumer would run them (`run_job.call_local`), talking
real HTTP to the fake; one test kills the real worker process mid-prediction.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.fake_replicate import SDXL_VERSION, FakeReplicate, problem
from tests.helpers import queued_job_ids, submit
from webapp import attempts, jobs
from webapp.extensions import db, huey
from webapp.media import media_root
from webapp.models import Job, now_utc
from webapp.providers import available_models, default_model_id, get_model
from webapp.providers.base import GenerationTask, LeaseLost, PermanentProviderError
from webapp.providers.mapping import resolve_parameters
from webapp.providers.replicate import ReplicateProvider
from webapp.providers.replicate.client import ReplicateClient, Settings
from webapp.providers.replicate.models import ROUTES
from webapp.providers.replicate.outputs import parse_progress
from webapp.tasks import cancel_upstream, run_job

TOKEN = f"r8_{secrets.token_hex(18)}"  # unique, so finding it anywhere is meaningful
GENERATE = "/api/v1/jobs/generate"
TERMINAL = ("completed", "failed", "cancelled")
SMALL = {"megapixels": "0.25"}  # flux renders 512x512: quick to encode


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate(TOKEN) as server:
        yield server


@pytest.fixture
def app_config(app_config: dict[str, Any], fake: FakeReplicate) -> dict[str, Any]:
    return {**app_config, **fake.settings()}


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything logged at any level by our code and the HTTP libraries."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    watched = [logging.getLogger(), logging.getLogger("webapp")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield text
    for logger, level in zip(watched, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def reload(job_id: str) -> Job:
    """Read the job afresh (end the session's read snapshot first)."""
    db.session.commit()
    return db.session.get(Job, job_id, populate_existing=True)


def job_body(client: FlaskClient, job_id: str) -> dict[str, Any]:
    return client.get(f"/api/v1/jobs/status/{job_id}").get_json()


def make_due(job_id: str) -> None:
    """Let a retrying job run now instead of after its backoff."""
    job = reload(job_id)
    job.run_after = None
    db.session.commit()


def run_to_end(job_id: str, attempts: int = 10) -> Job:
    """Run attempts, waiting out each backoff, until the job ends."""
    for _ in range(attempts):
        job = reload(job_id)
        if job.status in TERMINAL:
            return job
        if job.run_after is not None:
            time.sleep(max(0.0, (job.run_after - now_utc()).total_seconds()))
        run_job.call_local(job_id)
    return reload(job_id)


def start(client: FlaskClient, model: str = "flux-schnell", **parameters: Any) -> str:
    """Submit a job of a Replicate model; return its id."""
    return submit(client, model=model, parameters=parameters)["id"]


def in_thread(app: Flask, fn: Any, *args: Any) -> threading.Thread:
    def target() -> None:
        with app.app_context():
            fn(*args)
            db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


# -- the registry ---------------------------------------------------------------------


class TestRegistry:
    def test_models_appear_with_a_token(self, client: FlaskClient) -> None:
        body = client.get("/api/v1/models").get_json()
        assert body["default_model"] == "flux-schnell"
        ids = [m["id"] for m in body["models"]]
        assert ids[0] == "flux-schnell" and {"flux-dev", "flux-1.1-pro", "sdxl", "demo"} <= set(ids)
        models = {m["id"]: m for m in body["models"]}
        params = {m: {p["name"]: p for p in models[m]["parameters"]} for m in models}
        assert params["flux-schnell"]["num_inference_steps"] == {
            "name": "num_inference_steps",
            "type": "integer",
            "default": 4,
            "minimum": 1,
            "maximum": 4,
            "description": "Denoising steps",
        }
        assert params["flux-schnell"]["go_fast"]["type"] == "boolean"
        assert params["flux-schnell"]["go_fast"]["default"] is True
        assert params["flux-schnell"]["megapixels"]["choices"] == ["1", "0.25"]
        assert params["flux-dev"]["guidance_scale"]["maximum"] == 10
        assert params["flux-1.1-pro"]["safety_tolerance"]["maximum"] == 6
        assert "num_outputs" not in params["flux-1.1-pro"]
        assert "K_EULER" in params["sdxl"]["scheduler"]["choices"]
        assert params["sdxl"]["refine"]["default"] == "no_refiner"
        assert models["flux-schnell"]["provider"] == "replicate"
        assert models["flux-schnell"]["offline"] is False

    def test_no_token_no_models(self, app: Flask) -> None:
        app.config["REPLICATE_API_TOKEN"] = ""
        assert list(available_models()) == ["demo"]
        assert default_model_id() == "demo"

    def test_default_model_is_flux_schnell(self, client: FlaskClient) -> None:
        created = submit(client, parameters=SMALL)
        assert created["model"] == "flux-schnell"

    def test_the_form_offers_them(self, client: FlaskClient) -> None:
        page = client.get("/").get_data(as_text=True)
        for model in ("flux-schnell", "flux-dev", "flux-1.1-pro", "sdxl"):
            assert f'value="{model}"' in page
        advanced = client.get("/partials/advanced?model=flux-schnell").get_data(as_text=True)
        assert 'name="go_fast"' in advanced and 'name="megapixels"' in advanced
        assert '<option value="false"' in advanced
        assert 'name="scheduler"' in client.get("/partials/advanced?model=sdxl").get_data(
            as_text=True
        )


# -- validation of model-specific parameters ---------------------------------------------


@pytest.mark.parametrize(
    ("model", "parameters"),
    [
        ("flux-schnell", {"go_fast": False, "megapixels": "0.25"}),
        ("flux-dev", {"go_fast": True, "guidance_scale": 4.5}),
        ("flux-1.1-pro", {"safety_tolerance": 6, "prompt_upsampling": True}),
        ("sdxl", {"scheduler": "DDIM", "refine": "expert_ensemble_refiner", "high_noise_frac": 1}),
    ],
)
def test_model_specific_parameters_are_accepted(
    client: FlaskClient, model: str, parameters: dict[str, Any]
) -> None:
    created = submit(client, model=model, parameters=parameters)
    stored = reload(created["id"])
    assert stored.parameters.items() >= parameters.items()
    assert created["warnings"] == []


@pytest.mark.parametrize(
    ("model", "name", "value", "kind"),
    [
        ("flux-schnell", "go_fast", "yes", "bool_type"),
        ("flux-schnell", "go_fast", 1, "bool_type"),
        ("flux-schnell", "megapixels", "2", "literal_error"),
        ("flux-schnell", "megapixels", 1, "literal_error"),
        ("flux-1.1-pro", "safety_tolerance", 7, "less_equal"),
        ("flux-1.1-pro", "safety_tolerance", 0, "greater_equal"),
        ("flux-1.1-pro", "safety_tolerance", 2.5, "int_type"),
        ("flux-1.1-pro", "prompt_upsampling", "true", "bool_type"),
        ("sdxl", "scheduler", "euler", "literal_error"),
        ("sdxl", "refine", True, "literal_error"),
        ("sdxl", "high_noise_frac", 1.5, "less_equal"),
        ("sdxl", "go_fast", True, "extra_forbidden"),
        ("flux-schnell", "scheduler", "DDIM", "extra_forbidden"),
        ("flux-1.1-pro", "megapixels", "1", "extra_forbidden"),
        ("demo", "go_fast", True, "extra_forbidden"),
        ("flux-dev", "guidance", 3, "extra_forbidden"),
        ("flux-dev", "sampler", "euler", "extra_forbidden"),
    ],
)
def test_model_specific_parameters_are_validated(
    client: FlaskClient, model: str, name: str, value: Any, kind: str
) -> None:
    response = client.post(
        GENERATE, json={"prompt": "a fox", "model": model, "parameters": {name: value}}
    )
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    [error] = body["detail"]
    assert error["type"] == kind
    assert error["loc"] == ["body", "parameters", name]
    assert error["input"] == value
    assert set(error) == {"type", "loc", "msg", "input"}
    if kind == "extra_forbidden":
        assert error["msg"] == "Extra inputs are not permitted"
    assert client.get("/api/v1/jobs").get_json()["total"] == 0
    assert queued_job_ids() == []


# -- mapping our parameters to each model's inputs --------------------------------------


@pytest.mark.parametrize(
    ("model", "requested", "expected", "absent"),
    [
        pytest.param(
            "flux-dev",
            {"guidance_scale": 4.5},
            {"guidance": 4.5, "num_inference_steps": 28, "aspect_ratio": "1:1"},
            {"guidance_scale", "width", "height", "resize_to"},
            id="flux-dev-guidance",
        ),
        pytest.param(
            "flux-schnell",
            {"width": 1000, "height": 560},
            {"aspect_ratio": "16:9", "resize_to": "1000x560"},
            {"width", "height"},
            id="flux-exact-size",
        ),
        pytest.param(
            "flux-schnell",
            {"width": 1344, "height": 768},
            {"aspect_ratio": "16:9"},
            {"width", "height", "resize_to"},
            id="flux-native-size",
        ),
        pytest.param(
            "flux-schnell",
            {"aspect_ratio": "9:16"},
            {"aspect_ratio": "9:16", "go_fast": True, "megapixels": "1", "output_format": "webp"},
            {"width", "height", "resize_to"},
            id="flux-ratio",
        ),
        pytest.param(
            "flux-1.1-pro",
            {"width": 1000, "height": 500},
            {"aspect_ratio": "custom", "width": 992, "height": 512, "resize_to": "1000x500"},
            {"num_outputs"},
            id="pro-custom",
        ),
        pytest.param(
            "flux-1.1-pro",
            {"aspect_ratio": "21:9"},
            {"aspect_ratio": "custom", "width": 1440, "height": 608},
            {"resize_to"},
            id="pro-ratio-it-lacks",
        ),
        pytest.param(
            "flux-1.1-pro",
            {"aspect_ratio": "4:5"},
            {"aspect_ratio": "4:5", "safety_tolerance": 2, "prompt_upsampling": False},
            {"width", "height"},
            id="pro-ratio",
        ),
        pytest.param(
            "sdxl",
            {"aspect_ratio": "16:9"},
            {"width": 1024, "height": 576, "scheduler": "K_EULER", "guidance_scale": 7.5},
            {"aspect_ratio", "resize_to"},
            id="sdxl-ratio",
        ),
        pytest.param(
            "sdxl",
            {"width": 300, "height": 200},
            {"width": 304, "height": 200, "resize_to": "300x200"},
            {"aspect_ratio"},
            id="sdxl-8-pixel-blocks",
        ),
    ],
)
def test_parameters_map_to_model_inputs(
    app: Flask, model: str, requested: dict, expected: dict, absent: set
) -> None:
    sent, warnings = resolve_parameters(get_model(model), {"seed": 5, **requested})
    assert sent.items() >= expected.items()
    assert not absent & sent.keys()
    assert sent["seed"] == 5
    assert warnings == []


@pytest.mark.parametrize(
    ("model", "requested", "sent", "warning"),
    [
        ("flux-schnell", {"negative_prompt": "blur"}, {}, "negative_prompt is not supported"),
        ("flux-schnell", {"guidance_scale": 7.5}, {}, "guidance_scale is not supported"),
        ("flux-schnell", {"num_inference_steps": 10}, {"num_inference_steps": 4}, "maximum; 4"),
        ("flux-1.1-pro", {"num_outputs": 2}, {}, "num_outputs is not supported"),
        ("sdxl", {"output_format": "jpg"}, {}, "output_format is not supported"),
        ("sdxl", {"guidance_scale": 0.5}, {"guidance_scale": 1}, "minimum; 1 was used"),
        ("flux-dev", {"guidance_scale": 12.0}, {"guidance": 10.0}, "maximum; 10 was used"),
    ],
)
def test_unsupported_and_out_of_range_parameters_warn(
    app: Flask, model: str, requested: dict, sent: dict, warning: str
) -> None:
    resolved, warnings = resolve_parameters(get_model(model), requested)
    assert resolved.items() >= sent.items()
    assert all(name in sent or name not in resolved for name in requested)
    assert len(warnings) == 1 and warning in warnings[0]


def test_what_was_sent_is_stored_on_the_job(client: FlaskClient, fake: FakeReplicate) -> None:
    job_id = start(client, "flux-dev", guidance_scale=4.0, width=600, height=400, **SMALL)
    job = run_to_end(job_id)
    assert job.status == "completed"
    [create] = fake.calls("create")
    sent = dict(create.body["input"])
    assert sent.pop("prompt") == job.prompt
    stored = dict(job.provider_parameters)
    assert stored.pop("resize_to") == "600x400"
    assert sent == stored
    assert sent["guidance"] == 4.0 and sent["aspect_ratio"] == "3:2"


# -- the HTTP protocol ------------------------------------------------------------------


class TestProtocol:
    def test_official_model_route_with_bearer_token(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        job = run_to_end(start(client, **SMALL))
        assert job.status == "completed" and job.progress == 100
        [create] = fake.calls("create")
        assert create.path == "/v1/models/black-forest-labs/flux-schnell/predictions"
        assert create.authorization == f"Bearer {TOKEN}"
        assert set(create.body) == {"input"}
        assert create.prefer is None
        assert job.provider_job_id == fake.created[0].id
        gets = fake.calls("get")
        assert gets and all(g.path == f"/v1/predictions/{job.provider_job_id}" for g in gets)
        # Output files live on another host upstream: the token is never sent there.
        files = fake.calls("file")
        assert len(files) == 1 and files[0].authorization is None
        [media] = job.media
        assert (media.width, media.height, media.mime_type) == (512, 512, "image/webp")

    def test_sdxl_runs_by_version(self, client: FlaskClient, fake: FakeReplicate) -> None:
        job = run_to_end(start(client, "sdxl", width=256, height=192, num_outputs=2))
        assert job.status == "completed"
        [create] = fake.calls("create")
        assert create.path == "/v1/predictions"
        assert create.body["version"] == SDXL_VERSION
        assert [(m.width, m.height, m.mime_type) for m in job.media] == [
            (256, 192, "image/png"),
            (256, 192, "image/png"),
        ]

    def test_a_single_url_output(self, client: FlaskClient, fake: FakeReplicate) -> None:
        job = run_to_end(start(client, "flux-1.1-pro", width=256, height=256))
        assert job.status == "completed"
        assert isinstance(fake.to_json(fake.created[0])["output"], str)
        assert [(m.width, m.height) for m in job.media] == [(256, 256)]

    def test_exact_size_is_a_centred_cover_crop(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        job = run_to_end(start(client, width=600, height=200, **SMALL))
        # 3:1 is nearest 21:9, which flux renders at 768x320 (half size): resized to cover.
        assert fake.calls("create")[0].body["input"]["aspect_ratio"] == "21:9"
        [media] = job.media
        assert (media.width, media.height) == (600, 200)
        with Image.open(media_root() / media.storage_path) as image:
            assert image.size == (600, 200)
            # The fake draws a white disc in the middle: a centred crop keeps it there.
            assert min(image.convert("RGB").getpixel((300, 100))) > 200
        info = job_body(client, job.id)["media"][0]
        assert (info["width"], info["height"]) == (600, 200)

    def test_outputs_are_copied_before_they_expire(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        job = run_to_end(start(client, **SMALL))
        url = fake.to_json(fake.created[0])["output"][0]
        fake.expire_outputs()
        assert requests.get(url, timeout=5).status_code == 404
        assert fake.to_json(fake.created[0])["data_removed"] is True
        response = client.get(f"/api/v1/media/{job.media[0].id}")
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.data)).size == (512, 512)

    def test_progress_follows_the_logs(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        fake.plan_next(run_seconds=1.2)
        job_id = start(client, **SMALL)
        runner = in_thread(app, run_job.call_local, job_id)
        seen = []
        while runner.is_alive():
            seen.append(reload(job_id).progress)
            time.sleep(0.03)
        seen.append(reload(job_id).progress)
        assert seen == sorted(seen), "progress never goes backwards"
        assert seen[-1] == 100
        assert {25.0, 50.0, 75.0} & set(seen), seen  # flux-schnell's four steps

    def test_polling_is_paced(self, app: Flask, client: FlaskClient, fake: FakeReplicate) -> None:
        app.config["REPLICATE_POLL_SECONDS"] = 0.1
        fake.plan_next(run_seconds=0.5)
        assert run_to_end(start(client, **SMALL)).status == "completed"
        assert 3 <= len(fake.calls("get")) <= 9

    def test_prefer_wait_returns_the_finished_prediction(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        app.config["REPLICATE_WAIT_SECONDS"] = 5
        job = run_to_end(start(client, **SMALL))
        assert job.status == "completed"
        [create] = fake.calls("create")
        assert create.prefer == "wait=5"
        assert fake.calls("get") == []


@pytest.mark.parametrize(
    ("logs", "fraction"),
    [
        ("", None),
        ("Using seed: 1\nloading weights\n", None),
        ("  0%|          | 0/4 [00:00<?, ?it/s]\n", 0.0),
        (" 45%|████▌     | 9/20 [00:02<00:02, 4.1it/s]", 0.45),
        ("  0%|  | 0/4\n 50%|█████     | 2/4 [00:00<00:00, 18.61it/s]\n", 0.5),
        (" 10%|█ | 1/10 [00:01]\r 30%|███ | 3/10 [00:02]\r", 0.3),
        ("100%|██████████| 50/50 [00:05<00:00]\n  4%|▍ | 1/25 [00:00<00:02]\n", 0.04),
    ],
)
def test_progress_parsing(logs: str, fraction: float | None) -> None:
    assert parse_progress(logs) == (pytest.approx(fraction) if fraction is not None else None)


# -- cancelling -------------------------------------------------------------------------


def test_cancel_stops_the_prediction(app: Flask, client: FlaskClient, fake: FakeReplicate) -> None:
    fake.plan_next(run_seconds=10)
    job_id = start(client, **SMALL)
    runner = in_thread(app, run_job.call_local, job_id)
    fake.wait_for("a running prediction", lambda: fake.created and fake.calls("get"))
    prediction_id = fake.created[0].id
    fake.wait_for("the id committed", lambda: reload(job_id).provider_job_id == prediction_id)
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    runner.join(5)
    assert not runner.is_alive(), "the worker stops following the prediction at once"
    polls = len(fake.calls("get"))
    time.sleep(0.05)
    assert len(fake.calls("get")) == polls
    job = reload(job_id)
    assert job.status == "cancelled" and job.media == [] and fake.calls("file") == []
    # The cancel queued the upstream cancel; a worker runs it.
    [message] = [t for t in huey.pending() if t.name.endswith("cancel_upstream")]
    cancel_upstream.call_local(*message.args)
    assert fake.status_of(prediction_id) == "canceled"
    [cancel] = fake.calls("cancel")
    assert cancel.path == f"/v1/predictions/{prediction_id}/cancel"
    assert cancel.authorization == f"Bearer {TOKEN}"


def test_a_prediction_whose_job_ended_before_its_id_was_kept_is_cancelled(
    client: FlaskClient, fake: FakeReplicate
) -> None:
    job_id = start(client, **SMALL)
    claim = attempts.claim_job(job_id)
    jobs.cancel_job(job_id)  # before the worker could commit the prediction's id
    job = reload(job_id)

    def remember(prediction_id: str) -> None:
        if not attempts.remember_provider_job_id(claim, prediction_id):
            raise LeaseLost(job_id)

    task = GenerationTask(
        job_id=job_id,
        model=get_model(job.model),
        prompt=job.prompt,
        params=dict(job.provider_parameters),
        report_progress=lambda fraction: None,
        remember_provider_job_id=remember,
    )
    with pytest.raises(LeaseLost):
        ReplicateProvider().generate(task)
    [prediction] = fake.created
    assert fake.status_of(prediction.id) == "canceled"
    assert reload(job_id).provider_job_id is None


def test_a_worker_that_lost_its_job_leaves_the_prediction_to_the_new_owner(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    fake.plan_next(run_seconds=1.0)
    job_id = start(client, **SMALL)
    runner = in_thread(app, run_job.call_local, job_id)
    fake.wait_for("a running prediction", lambda: fake.calls("get"))
    prediction_id = fake.created[0].id
    fake.wait_for("the id committed", lambda: reload(job_id).provider_job_id == prediction_id)
    # The worker stalls past its lease: the reaper hands the job to another worker.
    job = reload(job_id)
    job.lease_expires_at = now_utc() - timedelta(seconds=1)
    db.session.commit()
    assert attempts.reap(set())["requeued"] == 1
    make_due(job_id)
    runner.join(5)
    assert not runner.is_alive()
    assert fake.calls("cancel") == [], "the new owner resumes this very prediction"
    job = run_to_end(job_id)
    assert job.status == "completed" and job.retry_count == 1
    assert len(fake.calls("create")) == 1


# -- resuming after a crash -------------------------------------------------------------


class WorkerCrash(BaseException):
    """Stands in for SIGKILL: nothing in the worker catches it."""


def crash_after_create(job_id: str) -> str:
    """Claim the job and run the provider until the prediction exists, then 'die'."""
    claim = attempts.claim_job(job_id)
    assert claim is not None
    job = reload(job_id)

    def remember(prediction_id: str) -> None:
        assert attempts.remember_provider_job_id(claim, prediction_id)

    def die(fraction: float) -> None:
        raise WorkerCrash

    task = GenerationTask(
        job_id=job_id,
        model=get_model(job.model),
        prompt=job.prompt,
        params=dict(job.provider_parameters),
        report_progress=die,
        remember_provider_job_id=remember,
    )
    with pytest.raises(WorkerCrash):
        ReplicateProvider().generate(task)
    # The reaper finds the lease expired and puts the job back, one attempt spent.
    job = reload(job_id)
    job.lease_expires_at = now_utc() - timedelta(seconds=1)
    db.session.commit()
    assert attempts.reap(set())["requeued"] == 1
    make_due(job_id)
    return str(reload(job_id).provider_job_id)


class TestResume:
    def test_a_retry_resumes_the_prediction(self, client: FlaskClient, fake: FakeReplicate) -> None:
        fake.plan_next(run_seconds=0.3)
        job_id = start(client, **SMALL)
        prediction_id = crash_after_create(job_id)
        assert prediction_id == fake.created[0].id
        assert reload(job_id).status == "retrying"
        job = run_to_end(job_id)
        assert job.status == "completed" and job.retry_count == 1 and len(job.media) == 1
        assert len(fake.calls("create")) == 1, "no second prediction was paid for"
        assert job.provider_job_id == prediction_id

    def test_expired_outputs_are_made_again(self, client: FlaskClient, fake: FakeReplicate) -> None:
        job_id = start(client, **SMALL)
        first = crash_after_create(job_id)
        fake.wait_for("the prediction to finish", lambda: fake.status_of(first) == "succeeded")
        fake.expire_outputs()  # the worker stayed dead for over an hour
        job = run_to_end(job_id)
        assert job.status == "completed" and len(job.media) == 1
        assert len(fake.calls("create")) == 2
        assert job.provider_job_id == fake.created[1].id != first

    def test_a_forgotten_prediction_is_made_again(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        job_id = start(client, **SMALL)
        job = reload(job_id)
        job.provider_job_id = "qwertyqwertyqwertyqwerty22"  # Replicate answers 404
        db.session.commit()
        job = run_to_end(job_id)
        assert job.status == "completed"
        assert job.provider_job_id == fake.created[0].id
        assert len(fake.calls("create")) == 1

    def test_a_failed_prediction_is_not_paid_for_twice(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        fake.plan_next(error="CUDA out of memory")
        job_id = start(client, **SMALL)
        crash_after_create(job_id)
        job = run_to_end(job_id)
        assert (
            job.status == "failed"
            and job.error_message == "Replicate API error: CUDA out of memory"
        )
        assert len(fake.calls("create")) == 1


@pytest.mark.e2e
def test_killed_worker_resumes_the_prediction(tmp_path: Path) -> None:
    """kill -9 the real worker mid-prediction; the next worker finishes the same one."""
    from tests.procs import running_stack

    with FakeReplicate(TOKEN, run_seconds=2.0) as fake:
        env = {
            "REPLICATE_API_TOKEN": TOKEN,
            "REPLICATE_BASE_URL": fake.url,
            "DARKROOM_REPLICATE_POLL_SECONDS": "0.05",
            "DARKROOM_RETRY_BASE_SECONDS": "0.2",
            "DARKROOM_RETRY_MAX_SECONDS": "1",
        }
        with running_stack(tmp_path, env=env) as stack:
            job_id = stack.submit("a lighthouse", parameters=SMALL)["id"]
            fake.wait_for("a prediction", lambda: fake.calls("get"), timeout=30)
            prediction_id = fake.created[0].id
            stack.wait_until(
                "the prediction id to be committed",
                lambda: stack.db_rows("SELECT provider_job_id FROM jobs") == [(prediction_id,)],
            )
            stack.kill_worker()
            assert stack.status(job_id)["status"] == "processing"
            stack.start_worker()
            body = stack.wait_terminal([job_id], timeout=30)[job_id]
        assert body["status"] == "completed", body
        assert body["retry_count"] == 1 and len(body["media"]) == 1
        assert len(fake.calls("create")) == 1
        assert TOKEN not in stack.logs(lines=10_000)


# -- errors -----------------------------------------------------------------------------


class TestErrors:
    def test_a_wrong_token_fails_at_once(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        wrong = f"r8_{secrets.token_hex(18)}"
        app.config["REPLICATE_API_TOKEN"] = wrong
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == (
            "Replicate API error: Unauthenticated: You did not pass a valid authentication token"
        )
        assert job.error_details["status_code"] == 401
        assert fake.created == []
        assert wrong not in str(job_body(client, job.id))

    def test_invalid_input_is_permanent_with_its_fields(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        fields = [{"type": "enum", "field": "input.megapixels", "description": "bad choice"}]
        fake.fail(
            "create",
            422,
            body=problem(
                422,
                "Input validation failed",
                "- input.megapixels: bad choice",
                invalid_fields=fields,
            ),
        )
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == (
            "Replicate API error: Input validation failed: - input.megapixels: bad choice"
        )
        assert job.error_details["invalid_fields"] == fields
        assert job_body(client, job.id)["error_details"]["invalid_fields"] == fields

    def test_replicates_own_422_names_the_fields(self, app: Flask, fake: FakeReplicate) -> None:
        """What the fake's schema check answers for an input Replicate would refuse."""
        client = ReplicateClient(Settings.from_config(app.config))
        with client, pytest.raises(PermanentProviderError) as caught:
            client.create(ROUTES["flux-schnell"], {"prompt": "x", "megapixels": "2", "steps": 4})
        error = caught.value
        assert error.message.startswith("Replicate API error: Input validation failed: - input.")
        assert [f["field"] for f in error.details["invalid_fields"]] == [
            "input.megapixels",
            "input.steps",
        ]
        assert fake.created == []

    def test_an_unknown_model_is_permanent(self, client: FlaskClient, fake: FakeReplicate) -> None:
        fake.fail("create", 404)
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == (
            "Replicate API error: Model not found: black-forest-labs/flux-schnell"
        )

    def test_429_honours_retry_after(self, client: FlaskClient, fake: FakeReplicate) -> None:
        fake.fail("create", 429, retry_after="3")
        job_id = start(client, **SMALL)
        run_job.call_local(job_id)
        job = reload(job_id)
        assert job.status == "retrying" and job.retry_count == 1
        assert job.error_message == (
            "Replicate API error: Request was throttled. Expected available in 3 second."
        )
        # RETRY_MAX_SECONDS is 0.05 in tests: only Retry-After explains a wait of ~3 s.
        assert 2.5 <= (job.run_after - job.updated_at).total_seconds() <= 3.5
        assert fake.created == []
        make_due(job_id)
        job = run_to_end(job_id)
        assert job.status == "completed" and job.retry_count == 1
        assert len(fake.created) == 1

    @pytest.mark.parametrize(
        ("route", "status"), [("create", 500), ("create", 503), ("get", 502), ("file", 504)]
    )
    def test_5xx_is_retried(
        self, client: FlaskClient, fake: FakeReplicate, route: str, status: int
    ) -> None:
        fake.fail(route, status)
        job_id = start(client, **SMALL)
        run_job.call_local(job_id)
        job = reload(job_id)
        assert job.status == "retrying" and job.retry_count == 1
        assert job.error_message.startswith("Replicate API error: ")
        assert job.error_message.endswith(f"(HTTP {status})")
        job = run_to_end(job_id)
        assert job.status == "completed" and job.retry_count == 1
        assert len(fake.created) == 1, "a retry resumes the prediction it already has"

    def test_retries_run_out(self, client: FlaskClient, fake: FakeReplicate) -> None:
        fake.fail("create", 503, times=10)
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == job.max_retries == 3
        assert job.error_message == "Replicate API error: Service Unavailable (HTTP 503)"
        assert job.error_details == {
            "status_code": 503,
            "detail": "Service Unavailable",
            "retry_count": 3,
            "max_retries": 3,
        }
        assert len(fake.calls("create")) == 4

    def test_a_hang_times_out_and_is_retried(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        app.config["REPLICATE_READ_TIMEOUT"] = 0.2
        fake.hang("get", 2.0)
        job_id = start(client, **SMALL)
        began = time.monotonic()
        run_job.call_local(job_id)
        assert time.monotonic() - began < 1.5
        job = reload(job_id)
        assert job.status == "retrying"
        assert (
            "no answer from 127.0.0.1" in job.error_message and "within 0.2 s" in job.error_message
        )
        job = run_to_end(job_id)
        assert job.status == "completed" and len(fake.calls("create")) == 1

    def test_a_refused_connection_is_retried(self, app: Flask, client: FlaskClient) -> None:
        from tests.procs import free_port

        port = free_port()
        app.config["REPLICATE_BASE_URL"] = f"http://127.0.0.1:{port}"
        job_id = start(client, **SMALL)
        run_job.call_local(job_id)
        job = reload(job_id)
        assert job.status == "retrying" and job.retry_count == 1
        assert job.error_message.startswith(
            f"Replicate API error: connection to 127.0.0.1:{port} failed"
        )

    def test_a_failed_prediction_is_permanent(
        self, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        fake.plan_next(error="All generated images contained NSFW content.")
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == (
            "Replicate API error: All generated images contained NSFW content."
        )
        assert job.error_details["prediction_id"] == fake.created[0].id
        assert job.media == []

    def test_a_prediction_past_its_deadline_is_cancelled(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        app.config["REPLICATE_DEADLINE_SECONDS"] = 0.2
        fake.plan_next(run_seconds=10)
        job_id = start(client, **SMALL)
        run_job.call_local(job_id)
        job = reload(job_id)
        assert job.status == "retrying"
        assert (
            job.error_message == "Replicate API error: the prediction did not finish within 0.2 s"
        )
        assert fake.status_of(fake.created[0].id) == "canceled"


# -- what comes back is checked ---------------------------------------------------------


class TestOutputSafety:
    def test_oversized_files_are_refused(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        app.config["REPLICATE_MAX_DOWNLOAD_BYTES"] = 200
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == "Replicate API error: an output file is larger than 200 bytes"

    def test_too_many_pixels_are_refused(
        self, app: Flask, client: FlaskClient, fake: FakeReplicate
    ) -> None:
        app.config["REPLICATE_MAX_PIXELS"] = 100_000
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed"
        assert "512x512 pixels is over the limit of 100000" in job.error_message

    @pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64])
    def test_undecodable_files_are_refused(
        self, client: FlaskClient, fake: FakeReplicate, data: bytes
    ) -> None:
        fake.plan_next(output_bytes=data)
        job = run_to_end(start(client, **SMALL))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == (
            "Replicate API error: an output is not a readable PNG, JPEG or WebP image"
        )


# -- the token stays secret -------------------------------------------------------------


def test_the_token_never_shows(
    app: Flask, client: FlaskClient, fake: FakeReplicate, logs: io.StringIO
) -> None:
    fake.plan_next(error="boom")
    failed = run_to_end(start(client, **SMALL))
    fake.fail("get", 503)
    retried = run_to_end(start(client, **SMALL))
    app.config["REPLICATE_BASE_URL"] = "http://127.0.0.1:1"  # nothing listens there
    refused = start(client, **SMALL)
    run_job.call_local(refused)
    assert (failed.status, retried.status, reload(refused).status) == (
        "failed",
        "completed",
        "retrying",
    )
    seen = [logs.getvalue(), client.get("/api/v1/jobs").get_data(as_text=True)]
    assert "created prediction" in seen[0]
    for job_id in (failed.id, retried.id, refused):
        seen.append(client.get(f"/api/v1/jobs/status/{job_id}").get_data(as_text=True))
        seen.append(client.get(f"/jobs/{job_id}").get_data(as_text=True))
    seen.append(client.get("/").get_data(as_text=True))
    seen.append(client.get("/api/v1/models").get_data(as_text=True))
    assert all(TOKEN not in text for text in seen)
    assert all(r.authorization is None for r in fake.calls("file"))


def test_a_malformed_token_is_not_echoed(app: Flask) -> None:
    bad = f"r8_{secrets.token_hex(8)}\nX-Injected: 1"
    with pytest.raises(PermanentProviderError) as caught:
        Settings.from_config({**app.config, "REPLICATE_API_TOKEN": bad})
    assert (
        caught.value.message == "Replicate API error: REPLICATE_API_TOKEN is missing or malformed"
    )
