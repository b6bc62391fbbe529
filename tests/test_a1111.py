"""The `a1111` provider against fake AUTOMATIC1111 servers on loopback (tests/fake_a1111.py).

Jobs run in this process as the consumer would run them (`run_job.call_local`), talking
real HTTP to two fakes; tests/test_a1111_e2e.py runs the real worker process against them.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.fake_a1111 import FakeA1111, Run, wait_until
from tests.helpers import submit
from webapp.extensions import db
from webapp.models import BackendState, Job, JobPreview, now_utc
from webapp.providers import PROVIDERS, available_models, backends, probe_all_providers
from webapp.providers.a1111.models import model_spec
from webapp.providers.mapping import resolve_parameters
from webapp.tasks import cancel_upstream, run_job

TERMINAL = ("completed", "failed", "cancelled")
SD15 = "a1111/v1-5-pruned-emaonly"
SDXL = "a1111/sd_xl_base_1.0"
QUICK = {"num_inference_steps": 4, "width": 128, "height": 128}
USER, PASSWORD = "painter", "s3cret-Pa55word"


@pytest.fixture
def fakes() -> Iterator[list[FakeA1111]]:
    with FakeA1111() as first, FakeA1111() as second:
        yield [first, second]


def settings(*urls: str) -> dict[str, Any]:
    """App settings that send the a1111 models to these servers, with short timeouts."""
    return {
        "A1111_URLS": ",".join(urls),
        "A1111_POLL_SECONDS": 0.02,
        "A1111_CONNECT_TIMEOUT": 1.0,
        "A1111_READ_TIMEOUT": 3.0,
        "BACKEND_RETRY_SECONDS": 30.0,
    }


@pytest.fixture
def app_config(app_config: dict[str, Any], fakes: list[FakeA1111]) -> dict[str, Any]:
    return {**app_config, **settings(*(fake.url for fake in fakes))}


def reload(job_id: str) -> Job:
    """Read the job afresh (end the session's read snapshot first)."""
    db.session.commit()
    return db.session.get(Job, job_id, populate_existing=True)


def run_to_end(job_id: str, attempts: int = 5) -> Job:
    """Run attempts (their back-off waived) until the job ends."""
    for _ in range(attempts):
        job = reload(job_id)
        if job.status in TERMINAL:
            return job
        job.run_after = None
        db.session.commit()
        run_job.call_local(job_id)
    return reload(job_id)


def start(client: FlaskClient, model: str = SD15, **parameters: Any) -> str:
    """Submit a job of an a1111 model; return its id."""
    return submit(client, model=model, parameters={**QUICK, **parameters})["id"]


def in_thread(app: Flask, job_id: str) -> threading.Thread:
    """Run a job's attempt on another thread, as a worker thread would."""

    def target() -> None:
        with app.app_context():
            run_job.call_local(job_id)
            db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def the_run(fake: FakeA1111, step: int = 1) -> Run:
    """Wait until a run of ours is on the fake's GPU at least at `step`; return it."""
    return fake.wait_for(
        f"a run at step {step}",
        lambda: fake.current if fake.current and fake.current.step >= step else None,
    )


def sent(fake: FakeA1111, kind: str = "txt2img") -> dict[str, Any]:
    (request,) = fake.calls(kind)
    return request.body


def png(size: tuple[int, int], colour: Any = (200, 40, 40), mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def foreign_run(fake: FakeA1111, task_id: str = "task(txt2img-SOMEONE)") -> threading.Thread:
    """Someone else's txt2img on the server (the A1111 UI, another client), held at step 1."""
    fake.plan_next(hold_at_step=1)
    body = {"prompt": "theirs", "steps": 3, "width": 64, "height": 64, "force_task_id": task_id}
    thread = threading.Thread(
        target=lambda: requests.post(f"{fake.url}/sdapi/v1/txt2img", json=body, timeout=10)
    )
    thread.start()
    fake.wait_for("their run", lambda: fake.current and fake.current.task_id == task_id)
    return thread


# -- the registry ---------------------------------------------------------------------


class TestModels:
    def test_each_checkpoint_is_a_model_with_the_servers_samplers(
        self, client: FlaskClient
    ) -> None:
        models = {m["id"]: m for m in client.get("/api/v1/models").get_json()["models"]}
        assert {SD15, SDXL} <= set(models)
        sd15 = models[SD15]
        assert sd15["provider"] == "a1111" and sd15["inputs"] == ["image", "mask"]
        params = {p["name"]: p for p in sd15["parameters"]}
        assert params["sampler"]["choices"] == ["DPM++ 2M", "Euler a", "Euler", "DDIM", "UniPC"]
        assert params["sampler"]["default"] == "DPM++ 2M"
        assert params["scheduler"]["choices"][0] == "automatic"
        assert params["width"]["default"] == 512
        assert {p["name"]: p for p in models[SDXL]["parameters"]}["width"]["default"] == 1024
        assert params["num_inference_steps"]["maximum"] == 150
        assert params["inpainting_fill"]["choices"] == [
            "fill",
            "original",
            "latent_noise",
            "latent_nothing",
        ]

    def test_the_form_offers_them(self, client: FlaskClient) -> None:
        assert f'value="{SD15}"' in client.get("/").get_data(as_text=True)
        advanced = client.get(f"/partials/advanced?model={SD15}").get_data(as_text=True)
        assert 'name="sampler"' in advanced and "Euler a" in advanced

    def test_models_are_the_union_of_healthy_servers(
        self, app: Flask, app_config: dict[str, Any]
    ) -> None:
        old = FakeA1111(checkpoints=("anything-v3",), samplers=("Euler a", "LMS"), schedulers=None)
        with old:
            app.config["A1111_URLS"] = f"{app_config['A1111_URLS']},{old.url}"
            models = available_models()
            assert {SD15, SDXL, "a1111/anything-v3"} <= set(models)
            choices = models["a1111/anything-v3"].param("sampler")
            assert choices is not None and choices.choices[-1] == "LMS"
            assert "Euler a" in choices.choices and choices.choices.count("Euler a") == 1
            # The old server goes away: its checkpoint with it, the others stay.
            backends.record_down(backends.configured("a1111")[2], "gone")
            models = available_models()
            assert "a1111/anything-v3" not in models and SD15 in models
            sampler = models[SD15].param("sampler")
            assert sampler is not None and "LMS" not in sampler.choices

    def test_servers_without_schedulers_offer_no_scheduler(self, app: Flask) -> None:
        with FakeA1111(schedulers=None) as old:
            app.config["A1111_URLS"] = old.url
            spec = available_models()[SD15]
            assert spec.param("scheduler") is None
            resolved, _ = resolve_parameters(spec, {"width": 512, "height": 512})
            assert "scheduler" not in resolved

    def test_no_servers_no_models(self, app: Flask) -> None:
        app.config["A1111_URLS"] = ""
        assert not [m for m in available_models() if m.startswith("a1111/")]


# -- mapping --------------------------------------------------------------------------


def spec_of(name: str = "v1-5-pruned-emaonly") -> Any:
    return model_spec(
        {"name": name, "title": f"{name}.safetensors"}, ("Euler a", "DDIM"), ("automatic",)
    )


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ({}, {"width": 512, "height": 512}),
        ({"aspect_ratio": "16:9"}, {"width": 512, "height": 288}),
        ({"width": 1000, "height": 750}, {"width": 1000, "height": 752, "resize_to": "1000x750"}),
        ({"width": 333, "height": 500}, {"width": 336, "height": 496, "resize_to": "333x500"}),
    ],
)
def test_sizes_go_in_8_pixel_blocks(requested: dict[str, Any], expected: dict[str, Any]) -> None:
    resolved, warnings = resolve_parameters(spec_of(), {"seed": 1, **requested})
    assert {k: resolved.get(k) for k in expected} == expected
    assert "resize_to" in resolved or "resize_to" not in expected
    assert warnings == []


def test_parameters_get_the_apis_names() -> None:
    requested = {
        "num_inference_steps": 30,
        "guidance_scale": 5.5,
        "num_outputs": 2,
        "seed": 42,
        "negative_prompt": "blur",
        "sampler": "DDIM",
    }
    resolved, _ = resolve_parameters(spec_of(), requested)
    assert resolved == {
        "width": 512,
        "height": 512,
        "steps": 30,
        "cfg_scale": 5.5,
        "negative_prompt": "blur",
        "seed": 42,
        "batch_size": 2,
        "output_format": "png",
        "output_quality": 90,
        "sampler_name": "DDIM",
        "scheduler": "automatic",
    }


def test_a_picture_and_mask_make_an_inpainting_body() -> None:
    requested = {
        "seed": 1,
        "image": "upload-1",
        "mask": "upload-2",
        "prompt_strength": 0.6,
        "mask_blur": 8,
        "inpainting_fill": "latent_noise",
    }
    body, _ = resolve_parameters(spec_of(), requested)
    assert body["init_images"] == ["upload-1"] and body["mask"] == "upload-2"
    assert body["denoising_strength"] == 0.6 and body["mask_blur"] == 8
    assert body["inpainting_fill"] == 2 and body["inpaint_full_res"] is False
    assert body["resize_mode"] == 1 and body["inpainting_mask_invert"] == 0
    assert "image" not in body and "prompt_strength" not in body
    without_mask, _ = resolve_parameters(spec_of(), {**requested, "mask": None})
    assert "mask_blur" not in without_mask and "mask" not in without_mask
    assert without_mask["denoising_strength"] == 0.6
    text_only, _ = resolve_parameters(spec_of(), {"seed": 1, "prompt_strength": 0.6})
    assert "denoising_strength" not in text_only and "init_images" not in text_only


# -- runs -----------------------------------------------------------------------------


class TestRuns:
    def test_a_job_runs_txt2img_and_records_the_seed(
        self, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        job_id = start(client, seed=1234, width=200, height=150, guidance_scale=6.0)
        job = run_to_end(job_id)
        assert job.status == "completed", job.error_message
        first = fakes[0]
        body = sent(first)
        assert body["prompt"] == "a red fox in the snow"
        checkpoint = first.checkpoints[0]
        assert body["override_settings"] == {"sd_model_checkpoint": checkpoint.title}
        assert body["override_settings_restore_afterwards"] is False
        assert body["force_task_id"] == job.provider_job_id
        assert (body["width"], body["height"], body["steps"], body["cfg_scale"]) == (
            200,
            152,
            4,
            6.0,
        )
        assert (
            body["seed"] == 1234 and body["batch_size"] == 1 and body["sampler_name"] == "DPM++ 2M"
        )
        assert not {"output_format", "output_quality", "resize_to"} & set(body)
        assert job.provider_output == {
            "seed": 1234,
            "sd_model_name": "v1-5-pruned-emaonly",
            "sd_model_hash": checkpoint.hash,
        }
        media = client.get(f"/api/v1/jobs/status/{job_id}").get_json()["media"]
        assert [(m["width"], m["height"]) for m in media] == [(200, 150)]
        assert job.backend == f"a1111 {first.url}" and job.retry_count == 0
        assert fakes[1].calls("txt2img") == []

    def test_several_outputs_keep_every_seed(self, client: FlaskClient) -> None:
        job = run_to_end(start(client, seed=7, num_outputs=3, output_format="webp"))
        assert job.status == "completed", job.error_message
        assert job.provider_output["seed"] == 7
        assert job.provider_output["all_seeds"] == [7, 8, 9]
        media = client.get(f"/api/v1/jobs/status/{job.id}").get_json()["media"]
        assert [m["mime_type"] for m in media] == ["image/webp"] * 3

    def test_progress_and_a_live_preview_while_it_runs(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        fakes[0].plan_next(hold_at_step=3)
        job_id = start(client, num_inference_steps=6)
        thread = in_thread(app, job_id)
        try:
            the_run(fakes[0], step=3)
            preview = wait_until(
                "a preview", lambda: db.session.rollback() or db.session.get(JobPreview, job_id)
            )
            picture = Image.open(io.BytesIO(preview.data))
            assert picture.format == "JPEG"
            # Step 3 of 6, held: A1111 says 0.01 + 3/6 of it.
            wait_until("progress at step 3", lambda: reload(job_id).progress == 51.0)
        finally:
            fakes[0].release()
            thread.join(10)
        assert reload(job_id).status == "completed"
        # Polls while it runs ask for the preview; the one after its answer does not.
        *polls, last = [p.query["skip_current_image"] for p in fakes[0].calls("progress")]
        assert polls and all(p == ["false"] for p in polls) and last == ["true"]

    def test_progress_of_someone_elses_run_is_not_ours(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        app.config["A1111_URLS"] = fakes[0].url
        theirs = foreign_run(fakes[0])
        job_id = start(client)
        thread = in_thread(app, job_id)
        try:
            fakes[0].wait_for("our run waiting", lambda: len(fakes[0].runs) == 2)
            # Polls that see their run, at step 1 with a preview, while ours waits.
            count = len(fakes[0].calls("progress"))
            fakes[0].wait_for("two polls", lambda: len(fakes[0].calls("progress")) >= count + 2)
            db.session.rollback()
            assert reload(job_id).progress == 0
            assert db.session.get(JobPreview, job_id) is None
        finally:
            fakes[0].release()
            theirs.join(10)
            thread.join(10)
        assert reload(job_id).status == "completed"

    def test_img2img_with_a_mask(self, client: FlaskClient, fakes: list[FakeA1111]) -> None:
        image = png((200, 152))
        mask = png((100, 76), 255, "L")  # scaled to the picture's size before it is sent
        job_id = submit(
            client,
            model=SD15,
            parameters={"image": image, "mask": mask, "prompt_strength": 0.55, "seed": 3},
        )["id"]
        job = run_to_end(job_id)
        assert job.status == "completed", job.error_message
        body = sent(fakes[0], "img2img")
        (run,) = fakes[0].runs
        picture = Image.open(io.BytesIO(run.received["init_images"]))  # stored re-encoded
        assert picture.size == (200, 152) and picture.getpixel((10, 10))[:3] == (200, 40, 40)
        sent_mask = Image.open(io.BytesIO(run.received["mask"]))
        assert sent_mask.mode == "L" and sent_mask.size == (200, 152)
        assert body["denoising_strength"] == 0.55 and body["inpainting_fill"] == 1
        assert (body["width"], body["height"], body["resize_mode"]) == (200, 152, 1)
        assert fakes[0].calls("txt2img") == []
        media = client.get(f"/api/v1/jobs/status/{job_id}").get_json()["media"]
        assert [(m["width"], m["height"]) for m in media] == [(200, 152)]

    def test_an_old_server_runs_jobs_without_progress(
        self, app: Flask, client: FlaskClient
    ) -> None:
        with FakeA1111(reports_task=False) as old:
            app.config["A1111_URLS"] = old.url
            job = run_to_end(start(client, num_inference_steps=8))
            assert job.status == "completed", job.error_message
            assert old.calls("progress")
            # Without `current_task` nothing tells whose run is on the GPU: nothing interrupted.
            PROVIDERS["a1111"].cancel(job.provider_job_id, backends.configured("a1111")[0])
            assert old.calls("interrupt") == []


# -- errors ---------------------------------------------------------------------------


class TestErrors:
    def test_out_of_memory_is_retried(self, client: FlaskClient, fakes: list[FakeA1111]) -> None:
        fakes[0].fail("txt2img", 500)
        job = run_to_end(start(client))
        assert job.status == "completed" and job.retry_count == 1

    @pytest.mark.parametrize(
        ("status", "body", "said"),
        [
            (
                422,
                {"detail": [{"loc": ["body", "steps"], "msg": "bad", "type": "x"}]},
                "body.steps: bad",
            ),
            (404, None, "HTTP 404"),
        ],
    )
    def test_refusals_fail_the_job(
        self,
        client: FlaskClient,
        fakes: list[FakeA1111],
        status: int,
        body: Any,
        said: str,
    ) -> None:
        fakes[0].fail("txt2img", status, body=body)
        job = run_to_end(start(client))
        assert job.status == "failed" and job.retry_count == 0
        assert said in job.error_message and fakes[0].url.split("//")[1] in job.error_message

    def test_a_sampler_the_server_lacks(self, app: Flask, client: FlaskClient) -> None:
        with FakeA1111(samplers=("Euler",)) as poor, FakeA1111(samplers=("DDIM",)) as other:
            app.config["A1111_URLS"] = f"{poor.url},{other.url}"
            job = run_to_end(start(client, sampler="DDIM"))
            assert job.status == "failed"
            assert "Sampler not found" in job.error_message

    def test_a_broken_picture_fails_the_job(
        self, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        fakes[0].plan_next(images=[base64.b64encode(b"not a picture").decode()])
        job = run_to_end(start(client))
        assert job.status == "failed" and "AUTOMATIC1111 error" in job.error_message

    def test_interrupted_on_the_server_fails_the_job(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        fakes[0].plan_next(hold_at_step=2)
        job_id = start(client, num_inference_steps=5)
        thread = in_thread(app, job_id)
        the_run(fakes[0], step=2)
        seen = len(fakes[0].calls("progress"))
        fakes[0].wait_for("a poll of the held run", lambda: len(fakes[0].calls("progress")) > seen)
        requests.post(f"{fakes[0].url}/sdapi/v1/interrupt", timeout=5)  # someone at the UI
        thread.join(10)
        job = reload(job_id)
        assert job.status == "failed" and "interrupted" in job.error_message


class TestCredentials:
    def test_basic_auth_on_every_request(self, app: Flask, client: FlaskClient) -> None:
        with FakeA1111(auth=(USER, PASSWORD)) as locked:
            host = locked.url.removeprefix("http://")
            app.config["A1111_URLS"] = f"http://{USER}:{PASSWORD}@{host}"
            job = run_to_end(start(client))
            assert job.status == "completed", job.error_message
            token = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            assert {r.authorization for r in locked.requests} == {token}
            assert {r.route for r in locked.requests} >= {"sd-models", "txt2img", "progress"}

    def test_wrong_credentials_never_show(
        self, app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        with FakeA1111(auth=(USER, "other")) as locked:
            host = locked.url.removeprefix("http://")
            app.config["A1111_URLS"] = f"http://{USER}:{PASSWORD}@{host}"
            assert SD15 not in available_models()
            health = client.get("/api/v1/health").get_data(as_text=True)
            (state,) = client.get("/api/v1/health").get_json()["backends"]
            assert state["status"] == "down" and "HTTP 401" in state["last_error"]
            assert state["url"] == locked.url
            for text in (health, caplog.text, str(state)):
                assert PASSWORD not in text


# -- several servers ------------------------------------------------------------------


class TestBackends:
    def test_a_server_that_dies_mid_job_hands_it_to_the_other(
        self, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        first, second = fakes
        first.plan_next(die_at_step=2)
        job_id = start(client, seed=5)
        job = run_to_end(job_id)
        assert job.status == "completed", job.error_message
        assert job.retry_count == 1 and job.backend_failovers == 1
        assert job.backend == f"a1111 {second.url}"
        assert len(first.calls("txt2img")) == 1 and len(second.calls("txt2img")) == 1
        assert job.provider_output["seed"] == 5
        # The dead one is down on /health, and its models come from the other alone.
        states = {s["url"]: s for s in client.get("/api/v1/health").get_json()["backends"]}
        assert states[first.url]["status"] == "down" and states[second.url]["status"] == "up"
        assert "connection" in states[first.url]["last_error"]
        assert states[first.url]["retry_at"] is not None
        assert SD15 in available_models()

    def test_only_the_first_move_counts_as_a_retry(self, app: Flask, client: FlaskClient) -> None:
        servers = [FakeA1111() for _ in range(3)]
        for fake in servers:
            fake.start()
            fake.plan_next(die_at_step=1)
        try:
            with FakeA1111() as last:
                app.config["A1111_URLS"] = ",".join([*(f.url for f in servers), last.url])
                job = run_to_end(start(client), attempts=6)
                assert job.status == "completed", job.error_message
                assert job.retry_count == 1 and job.backend_failovers == 3
        finally:
            for fake in servers:
                fake.stop()

    def test_a_slow_server_counts_as_down(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        app.config["A1111_READ_TIMEOUT"] = 0.5
        fakes[0].hang("txt2img", 5)
        job = run_to_end(start(client))
        assert job.status == "completed" and job.backend == f"a1111 {fakes[1].url}"
        assert job.retry_count == 1

    def test_a_dead_proxy_counts_as_down(self, client: FlaskClient, fakes: list[FakeA1111]) -> None:
        fakes[0].fail("txt2img", 502)
        job = run_to_end(start(client))
        assert job.status == "completed" and job.backend == f"a1111 {fakes[1].url}"
        assert backends.states("a1111", fresh=True)[0].up is False

    def test_jobs_go_to_the_shortest_queue(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        fakes[0].plan_next(hold_at_step=1)
        first = start(client)
        thread = in_thread(app, first)
        try:
            the_run(fakes[0])
            job = run_to_end(start(client))
            assert job.backend == f"a1111 {fakes[1].url}"
        finally:
            fakes[0].release()
            thread.join(10)

    def test_a_down_server_is_tried_again_after_its_back_off(
        self, app: Flask, fakes: list[FakeA1111]
    ) -> None:
        first = fakes[0]
        assert SD15 in available_models()
        first.stop()
        probe_all_providers()
        state = backends.states("a1111", fresh=True)[0]
        assert not state.up and state.failures == 1
        with FakeA1111(port=first.port) as back:
            probe_all_providers()  # within the back-off: left alone
            assert back.calls("sd-models") == []
            row = db.session.get(BackendState, state.backend.key)
            row.down_until = now_utc() - timedelta(seconds=1)  # as if the back-off were over
            db.session.commit()
            probe_all_providers()
            assert len(back.calls("sd-models")) == 1
            assert backends.states("a1111", fresh=True)[0].up


# -- cancel ---------------------------------------------------------------------------


class TestCancel:
    def test_cancel_interrupts_our_run(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        fakes[0].plan_next(hold_at_step=2)
        job_id = start(client, num_inference_steps=10)
        thread = in_thread(app, job_id)
        run = the_run(fakes[0], step=2)
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        fakes[0].wait_for("the interrupt", lambda: run.interrupted)
        thread.join(10)
        fakes[0].wait_for("its end", lambda: run.state == "done")
        cancel_upstream.call_local(job_id)  # what the cancel queued: ours no longer runs
        assert len(fakes[0].calls("interrupt")) == 1
        assert fakes[1].calls("interrupt") == fakes[1].calls("progress") == []
        assert reload(job_id).status == "cancelled"

    def test_cancel_leaves_someone_elses_run_alone(
        self, app: Flask, fakes: list[FakeA1111]
    ) -> None:
        theirs = foreign_run(fakes[0])
        try:
            backend = backends.configured("a1111")[0]
            PROVIDERS["a1111"].cancel("darkroom-not-running", backend)
            assert fakes[0].calls("interrupt") == []
            assert fakes[0].calls("progress")
            assert not the_run(fakes[0]).interrupted
        finally:
            fakes[0].release()
            theirs.join(10)

    def test_a_job_cancelled_while_queued_is_interrupted_once_it_starts(
        self, app: Flask, client: FlaskClient, fakes: list[FakeA1111]
    ) -> None:
        app.config["A1111_URLS"] = fakes[0].url
        theirs = foreign_run(fakes[0])
        job_id = start(client, num_inference_steps=50)
        thread = in_thread(app, job_id)
        fakes[0].wait_for("our run waiting", lambda: len(fakes[0].runs) == 2)
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        thread.join(10)
        assert fakes[0].calls("interrupt") == []  # theirs runs: left alone
        fakes[0].release()
        theirs.join(10)
        ours = fakes[0].runs[1]
        fakes[0].wait_for("ours interrupted", lambda: ours.state == "done")
        assert ours.interrupted and ours.step < 50
        assert not fakes[0].runs[0].interrupted
