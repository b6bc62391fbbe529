"""The `comfyui` provider against fake ComfyUI servers on loopback (tests/fake_comfyui.py).

Jobs run in this process as the consumer runs them (`run_job.call_local`), talking real
HTTP and a real websocket to the fakes: two servers, `fake` first in the setting and
`other` second, so an idle `fake` takes the jobs until it is busy or down.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.fake_comfyui import FakeComfyUI
from tests.helpers import submit
from tests.procs import free_port
from tests.test_replicate import reload, run_to_end
from tests.test_replicate_inputs import stored
from webapp import jobs
from webapp.extensions import db
from webapp.models import Job, JobPreview
from webapp.providers import available_models, probe_all_providers
from webapp.providers.comfyui import workflows
from webapp.providers.comfyui.models import model_id
from webapp.tasks import cancel_upstream, run_job

API = "/api/v1"
SDXL = "comfyui/sd_xl_base_1.0"
SD15 = "comfyui/v1-5-pruned-emaonly"
QUICK = {"num_inference_steps": 4, "width": 256, "height": 256}
VALUES = {
    "prompt": "p", "negative_prompt": "", "seed": 1, "width": 64, "height": 64,
    "num_inference_steps": 2, "guidance_scale": 7.0, "sampler_name": "euler",
    "scheduler": "normal", "num_outputs": 1,
}  # fmt: skip
"""Placeholder values for a built-in workflow queued directly on a fake."""


@pytest.fixture
def fake() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def other() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def app_config(app_config: dict[str, Any], fake: FakeComfyUI, other: FakeComfyUI) -> dict[str, Any]:
    return {**app_config, **fake.settings(), "COMFYUI_URLS": f"{fake.url},{other.url}"}


@pytest.fixture
def started() -> Iterator[Callable[..., FakeComfyUI]]:
    """Start fakes with their own options; all are stopped at the end."""
    servers: list[FakeComfyUI] = []

    def start(**options: Any) -> FakeComfyUI:
        servers.append(FakeComfyUI(**options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def use(app: Flask, *servers: FakeComfyUI | str) -> None:
    """Point the app at these servers (before anything reads the setting)."""
    app.config["COMFYUI_URLS"] = ",".join(s if isinstance(s, str) else s.url for s in servers)


def write_workflow(app: Flask, name: str, graph: Any) -> Path:
    folder = Path(app.instance_path) / "workflows"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(graph if isinstance(graph, str) else json.dumps(graph))
    return path


def queued(server: FakeComfyUI, index: int = -1) -> dict[str, Any]:
    """The body of a `POST /prompt` the server received."""
    return server.calls("prompt")[index].body


def inputs_of(graph: dict[str, Any], class_type: str) -> dict[str, Any]:
    (node,) = [n for n in graph.values() if n["class_type"] == class_type]
    return node["inputs"]


def picture(size: tuple[int, int], colour: tuple[int, int, int] = (30, 90, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def left_half_mask(size: tuple[int, int]) -> bytes:
    image = Image.new("L", size, 0)
    image.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(client: FlaskClient, data: bytes) -> str:
    response = client.post(
        f"{API}/uploads",
        data={"file": (io.BytesIO(data), "p.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def start(client: FlaskClient, model: str = SDXL, **parameters: Any) -> str:
    return submit(client, model=model, parameters={**QUICK, **parameters})["id"]


def completed(job_id: str) -> Job:
    job = run_to_end(job_id)
    assert job.status == "completed", (job.error_message, job.error_details)
    return job


def media_pictures(client: FlaskClient, job_id: str) -> list[Image.Image]:
    body = client.get(f"{API}/jobs/status/{job_id}").get_json()
    found = []
    for item in body["media"]:
        data = client.get(item["url"].removeprefix("http://darkroom.test")).get_data()
        found.append(Image.open(io.BytesIO(data)))
    return found


def in_thread(app: Flask, job_id: str) -> threading.Thread:
    def target() -> None:
        with app.app_context():
            run_job.call_local(job_id)
            db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll the database (a fresh read each time) until `check` returns something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- models --------------------------------------------------------------------------------


class TestModels:
    def test_one_model_per_checkpoint(self, client: FlaskClient, fake: FakeComfyUI) -> None:
        models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
        assert {SDXL, SD15} <= set(models)
        sdxl = models[SDXL]
        assert sdxl["provider"] == "comfyui" and sdxl["inputs"] == ["image", "mask"]
        params = {p["name"]: p for p in sdxl["parameters"]}
        assert params["sampler_name"]["choices"] == ["euler", "euler_ancestral", "dpmpp_2m", "ddim"]
        assert params["sampler_name"]["default"] == "euler"
        assert params["scheduler"]["default"] == "normal"
        assert params["width"]["default"] == 1024
        assert {p["name"]: p["default"] for p in models[SD15]["parameters"]}["width"] == 512
        assert set(params) >= {
            "width", "height", "aspect_ratio", "seed", "num_inference_steps", "guidance_scale",
            "negative_prompt", "num_outputs", "prompt_strength", "output_format",
        }  # fmt: skip

    def test_a_server_that_does_not_answer_is_down(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
        use(app, f"http://{nobody}", fake)
        assert SDXL in [m["id"] for m in client.get(f"{API}/models").get_json()["models"]]
        servers = {b["url"]: b for b in client.get(f"{API}/health").get_json()["backends"]}
        assert servers[f"http://{nobody}"]["status"] == "down"
        assert servers[fake.url]["status"] == "up"
        assert servers[f"http://{nobody}"]["last_error"] == (
            f"ComfyUI error: connection to {nobody} failed (GET /object_info)"
        )
        completed(start(client))
        assert fake.calls("prompt")

    def test_no_servers_no_models(self, app: Flask) -> None:
        use(app, "")
        assert not [m for m in available_models() if m.startswith("comfyui/")]

    def test_models_of_every_healthy_server(
        self, app: Flask, client: FlaskClient, started: Callable[..., FakeComfyUI]
    ) -> None:
        first = started(checkpoints=("only-here.safetensors",))
        second = started(checkpoints=("sub\\elsewhere.ckpt",))
        use(app, first, second)
        ids = [m["id"] for m in client.get(f"{API}/models").get_json()["models"]]
        assert {"comfyui/only-here", "comfyui/sub/elsewhere"} <= set(ids)
        # A job goes to the server that has its checkpoint.
        job = completed(start(client, "comfyui/sub/elsewhere"))
        assert not first.calls("prompt")
        assert inputs_of(queued(second)["prompt"], "CheckpointLoaderSimple") == {
            "ckpt_name": "sub\\elsewhere.ckpt"
        }
        assert job.backend == f"comfyui {second.url}"

    def test_long_names_get_a_short_id(self) -> None:
        long = model_id("x" * 80)
        assert len(long) == 64 and long.startswith("comfyui/xxx")
        assert model_id("x" * 80) == long != model_id("x" * 81)


# -- the built-in workflows ------------------------------------------------------------------


class TestBuiltIn:
    def test_text_to_image(self, client: FlaskClient, fake: FakeComfyUI) -> None:
        job_id = start(
            client,
            seed=42,
            guidance_scale=5.5,
            negative_prompt="blurry",
            sampler_name="dpmpp_2m",
            scheduler="karras",
        )
        job = completed(job_id)
        body = queued(fake)
        assert body["client_id"] == f"darkroom-{job_id}"
        assert body["prompt_id"] == job.provider_job_id
        graph = body["prompt"]
        sampler = inputs_of(graph, "KSampler")
        assert {k: sampler[k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler")} == {
            "seed": 42, "steps": 4, "cfg": 5.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        }  # fmt: skip
        assert sampler["denoise"] == 1.0
        assert inputs_of(graph, "EmptyLatentImage") == {
            "width": 256,
            "height": 256,
            "batch_size": 1,
        }
        texts = [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]
        assert texts == ["a red fox in the snow", "blurry"]
        assert (
            inputs_of(graph, "CheckpointLoaderSimple")["ckpt_name"] == "sd_xl_base_1.0.safetensors"
        )
        assert job.provider_output == {
            "prompt_id": job.provider_job_id,
            "server": fake.name,
            "seed": 42,
        }
        (image,) = media_pictures(client, job_id)
        assert image.size == (256, 256)

    def test_sizes_go_in_8_pixel_blocks_and_come_back_exact(
        self, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        job = completed(start(client, width=301, height=203, num_outputs=2))
        latent = inputs_of(queued(fake)["prompt"], "EmptyLatentImage")
        assert latent == {"width": 304, "height": 200, "batch_size": 2}
        assert job.provider_parameters["resize_to"] == "301x203"
        assert [p.size for p in media_pictures(client, job.id)] == [(301, 203), (301, 203)]

    def test_image_to_image(self, client: FlaskClient, fake: FakeComfyUI) -> None:
        upload_id = upload(client, picture((300, 200)))
        job = completed(start(client, image=upload_id, prompt_strength=0.25, width=240, height=160))
        graph = queued(fake)["prompt"]
        assert inputs_of(graph, "KSampler")["denoise"] == 0.25
        loaded = inputs_of(graph, "LoadImage")["image"]
        assert loaded == f"darkroom/darkroom-{upload_id}-240x160.png"
        sent = Image.open(io.BytesIO(fake.input_bytes(loaded)))
        assert sent.size == (240, 160)  # fitted to the size asked before it went
        assert inputs_of(graph, "RepeatLatentBatch")["amount"] == 1
        assert {n["class_type"] for n in graph.values()} >= {"VAEEncode", "LoadImage"}
        assert "EmptyLatentImage" not in {n["class_type"] for n in graph.values()}
        (image,) = media_pictures(client, job.id)
        # The fake blends its colour over the input by the denoise: mostly the input's blue.
        assert image.size == (240, 160) and image.convert("RGB").getpixel((5, 5))[2] > 120

    def test_an_image_of_the_right_size_goes_as_it_is(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        upload_id = upload(client, picture((256, 256)))
        completed(start(client, image=upload_id))
        loaded = inputs_of(queued(fake)["prompt"], "LoadImage")["image"]
        assert loaded == f"darkroom/darkroom-{upload_id}.png"
        assert fake.input_bytes(loaded) == stored(app, upload_id)
        assert fake.calls("upload")[0].body["overwrite"][2] == b"true"

    @pytest.mark.parametrize(
        ("strength", "encoder"), [(0.6, "SetLatentNoiseMask"), (1.0, "VAEEncodeForInpaint")]
    )
    def test_inpainting(
        self, client: FlaskClient, fake: FakeComfyUI, strength: float, encoder: str
    ) -> None:
        image_id = upload(client, picture((256, 256)))
        mask_id = upload(client, left_half_mask((256, 256)))
        job = completed(start(client, image=image_id, mask=mask_id, prompt_strength=strength))
        graph = queued(fake)["prompt"]
        assert inputs_of(graph, "LoadImageMask") == {
            "image": f"darkroom/darkroom-{mask_id}.png",
            "channel": "red",
        }
        assert encoder in {n["class_type"] for n in graph.values()}
        (image,) = media_pictures(client, job.id)
        rgb = image.convert("RGB")
        assert rgb.getpixel((250, 10)) == (30, 90, 160)  # black in the mask: kept
        assert rgb.getpixel((10, 10)) != (30, 90, 160)  # white: repainted

    def test_every_mode_passes_the_servers_validation(self, fake: FakeComfyUI) -> None:
        fake.state.inputs.update({"a.png": picture((64, 64)), "m.png": left_half_mask((64, 64))})
        values = {**VALUES, "prompt_strength": 0.5, "image": "a.png", "mask": "m.png"}
        for mode, full in [
            ("txt2img", False),
            ("img2img", False),
            ("inpaint", False),
            ("inpaint", True),
        ]:
            graph = workflows.fill(workflows.builtin(fake.checkpoints[0], mode, full), values)
            assert fake.validate(graph) == (None, {}), (mode, full)


# -- user workflows ------------------------------------------------------------------------


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


TURBO = {
    "4": node("CheckpointLoaderSimple", ckpt_name="sd_xl_base_1.0.safetensors"),
    "6": node("CLIPTextEncode", text="a photo of {{prompt}}, 35mm", clip=["4", 1]),
    "7": node("CLIPTextEncode", text="", clip=["4", 1]),
    "5": node("EmptyLatentImage", width="{{width}}", height="{{height}}", batch_size=1),
    "3": node(
        "KSampler",
        seed="{{seed}}",
        steps="{{num_inference_steps:3}}",
        cfg="{{guidance_scale:1.5}}",
        sampler_name="{{sampler_name:euler_ancestral}}",
        scheduler="simple",
        denoise=1,
        model=["4", 0],
        positive=["6", 0],
        negative=["7", 0],
        latent_image=["5", 0],
    ),
    "8": node("VAEDecode", samples=["3", 0], vae=["4", 2]),
    "9": node("SaveImage", filename_prefix="turbo", images=["8", 0]),
}
INVERT = {
    "1": node("LoadImage", image="{{image}}"),
    "2": node("ImageInvert", image=["1", 0]),
    "3": node("PreviewImage", images=["2", 0]),
}


class TestUserWorkflows:
    def test_placeholders_make_the_parameters(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        write_workflow(app, "turbo", TURBO)
        models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
        params = {p["name"]: p for p in models["comfyui/turbo"]["parameters"]}
        assert set(params) == {
            "width", "height", "aspect_ratio", "seed", "num_inference_steps", "guidance_scale",
            "sampler_name", "output_format", "output_quality",
        }  # fmt: skip
        assert params["num_inference_steps"]["default"] == 3
        assert params["guidance_scale"]["default"] == 1.5
        assert params["sampler_name"]["default"] == "euler_ancestral"
        assert models["comfyui/turbo"]["inputs"] == []

        job = completed(
            submit(
                client,
                prompt="a cat",
                model="comfyui/turbo",
                parameters={"width": 200, "height": 304, "seed": 7},
            )["id"]
        )
        graph = queued(fake)["prompt"]
        assert graph["6"]["inputs"]["text"] == "a photo of a cat, 35mm"
        assert graph["5"]["inputs"] == {"width": 200, "height": 304, "batch_size": 1}
        sampler = graph["3"]["inputs"]
        assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (7, 3, 1.5)
        assert sampler["sampler_name"] == "euler_ancestral" and sampler["scheduler"] == "simple"
        assert [p.size for p in media_pictures(client, job.id)] == [(200, 304)]

    def test_pictures_go_as_sent_and_are_needed(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        write_workflow(app, "invert", INVERT)
        models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
        assert models["comfyui/invert"]["inputs"] == ["image"]
        assert [p["name"] for p in models["comfyui/invert"]["parameters"]] == [
            "output_format", "output_quality",
        ]  # fmt: skip
        # Without its picture the job is refused at once (422) and reaches no server.
        assert models["comfyui/invert"]["required_inputs"] == ["image"]
        refused = client.post(
            f"{API}/jobs/generate", json={"prompt": "x", "model": "comfyui/invert"}
        )
        assert refused.status_code == 422
        (item,) = refused.get_json()["detail"]
        assert (item["type"], item["loc"]) == ("input_required", ["body", "parameters", "image"])
        assert not fake.calls("prompt") and not fake.calls("upload")

        upload_id = upload(client, picture((123, 77), (10, 20, 30)))
        job = completed(
            submit(client, model="comfyui/invert", parameters={"image": upload_id})["id"]
        )
        name = queued(fake)["prompt"]["1"]["inputs"]["image"]
        assert fake.input_bytes(name) == stored(app, upload_id)  # as stored: the workflow decides
        (image,) = media_pictures(client, job.id)  # a preview output (type temp) is taken
        assert image.size == (123, 77) and image.convert("RGB").getpixel((0, 0)) == (245, 235, 225)

    @pytest.mark.parametrize(
        ("name", "content", "reason"),
        [
            ("editor", {"nodes": [], "links": []}, "the editor's format"),
            ("unknown", {"1": node("X", a="{{colour}}")}, "unknown placeholder"),
            ("broken", "{not json", "not valid JSON"),
            ("mask-only", {"1": node("LoadImageMask", image="{{mask}}")}, "needs {{image}}"),
            ("bad default", TURBO, "name it with letters"),
        ],
    )  # fmt: skip
    def test_unusable_files_are_left_out_with_a_warning(
        self,
        app: Flask,
        client: FlaskClient,
        caplog: pytest.LogCaptureFixture,
        name: str,
        content: Any,
        reason: str,
    ) -> None:
        write_workflow(app, name, content)
        with caplog.at_level(logging.WARNING, "webapp.providers.comfyui"):
            ids = [m["id"] for m in client.get(f"{API}/models").get_json()["models"]]
        assert f"comfyui/{name}" not in ids and SDXL in ids
        assert reason in caplog.text

    def test_the_documented_example_works(
        self, app: Flask, client: FlaskClient, started: Callable[..., FakeComfyUI]
    ) -> None:
        server = started(checkpoints=("sd_xl_turbo_1.0_fp16.safetensors",))
        use(app, server)
        page = (Path(__file__).parent.parent / "docs" / "comfyui.md").read_text()
        example = page.split("```json", 1)[1].split("```", 1)[0]
        write_workflow(app, "sdxl-turbo", example)
        models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
        params = {p["name"]: p["default"] for p in models["comfyui/sdxl-turbo"]["parameters"]}
        assert params["num_inference_steps"] == 4 and params["guidance_scale"] == 1.0
        assert set(params) == {
            "width", "height", "aspect_ratio", "seed", "num_inference_steps", "guidance_scale",
            "output_format", "output_quality",
        }  # fmt: skip
        completed(start(client, "comfyui/sdxl-turbo"))

    def test_a_workflow_goes_to_a_server_that_can_run_it(
        self,
        app: Flask,
        client: FlaskClient,
        started: Callable[..., FakeComfyUI],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        lacking = started(missing_nodes=("ImageInvert",))
        able = started()
        use(app, lacking, able)
        write_workflow(app, "invert", INVERT)
        with caplog.at_level(logging.WARNING, "webapp.providers.comfyui"):
            assert "comfyui/invert" in available_models()
        assert f"{lacking.name} cannot run workflow invert: node 2 is a ImageInvert" in caplog.text
        completed(
            submit(
                client,
                model="comfyui/invert",
                parameters={"image": upload(client, picture((64, 64)))},
            )["id"]
        )
        assert not lacking.calls("prompt") and able.calls("prompt")

    def test_a_workflow_the_server_refuses_fails_at_once(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        graph = json.loads(json.dumps(TURBO))
        graph["5"]["inputs"]["batch_size"] = 0
        write_workflow(app, "zero", graph)
        job = run_to_end(submit(client, model="comfyui/zero")["id"])
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message.startswith("ComfyUI error: Prompt outputs failed validation")
        assert "node 5 (EmptyLatentImage): Value 0 smaller than min of 1" in job.error_message


# -- following a prompt ------------------------------------------------------------------------


class TestFollowing:
    def test_progress_and_previews_from_the_websocket(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        job_id = start(client, num_inference_steps=8, seed=3)
        fake.hold()
        thread = in_thread(app, job_id)
        try:
            fake.wait_for("the first step", lambda: fake.state.step >= 1)
            preview = until("a preview", lambda: db.session.get(JobPreview, job_id))
            assert Image.open(io.BytesIO(preview.data)).format == "JPEG"
            fake.hold(after_step=4)
            fake.wait_for("step 4", lambda: fake.state.step >= 4)
            until("progress", lambda: reload(job_id).progress >= 37.5)
        finally:
            fake.release()
            thread.join(10)
        assert reload(job_id).status == "completed"

    def test_the_history_when_there_is_no_websocket(
        self, app: Flask, client: FlaskClient, started: Callable[..., FakeComfyUI]
    ) -> None:
        plain = started(websocket=False)
        use(app, plain)
        job = completed(start(client))
        assert plain.calls("ws") and plain.websocket_clients == []
        assert plain.calls("history")[-1].path == f"/history/{job.provider_job_id}"

    def test_a_dropped_websocket_falls_back_to_http(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        job_id = start(client, num_inference_steps=6)
        fake.hold()
        thread = in_thread(app, job_id)
        try:
            fake.wait_for("the first step", lambda: fake.state.step >= 1)
            fake.drop_websockets()
            fake.wait_for("the websocket back", lambda: len(fake.calls("ws")) >= 2)
        finally:
            fake.release()
            thread.join(10)
        assert reload(job_id).status == "completed"

    def test_an_earlier_prompt_is_followed_not_queued_again(
        self, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        first = completed(start(client, seed=5))
        job_id = start(client, seed=5)
        job = reload(job_id)
        job.provider_job_id = first.provider_job_id  # as if an attempt queued it and died
        db.session.commit()
        completed(job_id)
        assert len(fake.calls("prompt")) == 1
        job_id = start(client)
        job = reload(job_id)
        job.provider_job_id = "not-on-this-server"
        db.session.commit()
        completed(job_id)
        assert len(fake.calls("prompt")) == 2

    def test_credentials_go_with_http_and_the_websocket(
        self, app: Flask, client: FlaskClient, started: Callable[..., FakeComfyUI]
    ) -> None:
        guarded = started(auth=("ann", "s3cret"))
        use(app, guarded.url.replace("http://", "http://ann:s3cret@"))
        job_id = start(client)
        completed(job_id)
        assert guarded.websocket_clients == [f"darkroom-{job_id}"]
        assert guarded.calls("prompt")


# -- errors ------------------------------------------------------------------------------------


class TestErrors:
    def test_a_node_error_fails_the_job(self, client: FlaskClient, fake: FakeComfyUI) -> None:
        fake.plan_next(error="mat1 and mat2 shapes cannot be multiplied")
        job = run_to_end(start(client))
        assert job.status == "failed" and job.retry_count == 0
        assert job.error_message == (
            "ComfyUI error: KSampler node 5: mat1 and mat2 shapes cannot be multiplied"
        )
        assert job.error_details["exception_type"] == "RuntimeError"

    def test_out_of_memory_is_retried(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        use(app, fake)
        fake.plan_next(error="Allocation on device", exception_type="torch.OutOfMemoryError")
        job = completed(start(client))
        # The retry finds the failed prompt on the server and queues it again.
        first, second = (call.body["prompt_id"] for call in fake.calls("prompt"))
        assert job.retry_count == 1 and first != second == job.provider_job_id
        assert f"/history/{first}" in [call.path for call in fake.calls("history")]

    def test_a_server_error_is_retried(self, client: FlaskClient, fake: FakeComfyUI) -> None:
        fake.fail("prompt", 500)
        job = completed(start(client))
        assert job.retry_count == 1 and job.backend_failovers == 0

    def test_interrupted_on_the_server(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        job_id = start(client, num_inference_steps=8)
        fake.hold()
        thread = in_thread(app, job_id)
        fake.wait_for("the first step", lambda: fake.state.step >= 1)
        fake.interrupt(None)  # someone pressed Cancel in ComfyUI's own page
        fake.release()
        thread.join(10)
        job = reload(job_id)
        assert job.status == "failed"
        assert job.error_message == "ComfyUI error: the prompt was interrupted on the server"

    def test_past_the_deadline_it_is_interrupted(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        app.config["COMFYUI_DEADLINE_SECONDS"] = 0.3
        app.config["MAX_RETRIES"] = 0
        job_id = start(client, num_inference_steps=8)
        fake.hold()
        try:
            run_job.call_local(job_id)
        finally:
            fake.release()
        job = reload(job_id)
        assert job.status == "failed" and "did not finish within 0.3 s" in job.error_message
        assert [c.body for c in fake.calls("interrupt")] == [{"prompt_id": job.provider_job_id}]

    @pytest.mark.parametrize("status", [502, 503, 401])
    def test_a_dead_proxy_or_refused_credentials_move_the_job(
        self, client: FlaskClient, fake: FakeComfyUI, other: FakeComfyUI, status: int
    ) -> None:
        fake.fail("prompt", status)
        job = completed(start(client))
        assert job.retry_count == 1 and job.backend_failovers == 1
        assert job.backend == f"comfyui {other.url}"
        down = {b["url"]: b for b in client.get(f"{API}/health").get_json()["backends"]}
        assert f"(HTTP {status}) to POST /prompt" in down[fake.url]["last_error"]

    def test_a_slow_server_is_left_for_another(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI, other: FakeComfyUI
    ) -> None:
        app.config["COMFYUI_READ_TIMEOUT"] = 0.3
        available_models()  # both probed while they answer quickly
        fake.hang("prompt", 2)
        job = completed(start(client))
        assert job.retry_count == 1 and job.backend_failovers == 1
        assert other.calls("prompt") and job.backend == f"comfyui {other.url}"


# -- cancel ------------------------------------------------------------------------------------


class TestCancel:
    def test_a_running_prompt_is_interrupted(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI, other: FakeComfyUI
    ) -> None:
        job_id = start(client, num_inference_steps=8)
        fake.hold()
        thread = in_thread(app, job_id)
        try:
            fake.wait_for("our prompt to run", lambda: fake.state.step >= 1)
            jobs.cancel_job(job_id)
            cancel_upstream.call_local(job_id)
        finally:
            fake.release()
            thread.join(10)
        prompt_id = reload(job_id).provider_job_id
        assert [c.body for c in fake.calls("interrupt")] == [{"prompt_id": prompt_id}]
        assert not fake.calls("queue_edit")
        history = fake.wait_for("the history", lambda: fake.state.history.get(prompt_id))
        assert history["status"]["messages"][-1][0] == "execution_interrupted"
        assert not other.calls("interrupt") and not other.calls("queue")
        assert reload(job_id).status == "cancelled"

    def test_a_waiting_prompt_is_taken_off_the_queue(
        self, app: Flask, client: FlaskClient, fake: FakeComfyUI
    ) -> None:
        fake.hold()
        graph = workflows.builtin(fake.checkpoints[0], "txt2img")
        foreign = fake.queue_foreign(workflows.fill(graph, VALUES))
        fake.wait_for("the foreign prompt to run", lambda: fake.state.step >= 1)
        job_id = start(client)
        thread = in_thread(app, job_id)
        try:
            fake.wait_for("our prompt to wait", lambda: len(fake.state.pending) == 1)
            jobs.cancel_job(job_id)
            cancel_upstream.call_local(job_id)
            prompt_id = reload(job_id).provider_job_id
            assert [c.body for c in fake.calls("queue_edit")] == [{"delete": [prompt_id]}]
            assert fake.pending_ids == [] and fake.running_id == foreign
            assert not fake.calls("interrupt")
        finally:
            fake.release()
            thread.join(10)
        assert fake.wait_for("the foreign prompt", lambda: fake.state.history.get(foreign))
        assert reload(job_id).status == "cancelled"


# -- several servers ---------------------------------------------------------------------------


def test_a_server_that_dies_mid_job_hands_the_job_to_another(
    client: FlaskClient, fake: FakeComfyUI, other: FakeComfyUI
) -> None:
    fake.plan_next(die_at_step=2)
    job = completed(start(client))
    assert job.retry_count == 1 and job.backend_failovers == 1  # counted once
    assert fake.calls("prompt") and other.calls("prompt")
    assert job.backend == f"comfyui {other.url}"
    assert job.provider_output["server"] == other.name
    health = client.get(f"{API}/health").get_json()
    servers = {b["url"]: b for b in health["backends"]}
    assert servers[fake.url]["status"] == "down" and servers[other.url]["status"] == "up"
    assert servers[fake.url]["last_error"].startswith("ComfyUI error: ")
    assert servers[fake.url]["retry_at"]
    # Its models stay offered while another server has them.
    assert SDXL in available_models()
    probe_all_providers()  # the worker's minute: the down one is left alone in its back-off
    assert len(fake.calls("object_info")) == 1
