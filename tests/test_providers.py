"""The model registry, parameter mapping and the demo provider."""

from __future__ import annotations

import hashlib

import pytest
from flask import Flask

from tests.helpers import run_queue, submit
from webapp.providers import available_models, default_model_id, get_model
from webapp.providers.base import GenerationTask
from webapp.providers.demo import DEMO_MODEL, DemoProvider
from webapp.providers.mapping import resolve_parameters


def test_demo_is_the_default_without_a_token(app: Flask) -> None:
    assert default_model_id() == "demo"
    assert list(available_models()) == ["demo"]
    assert get_model("demo").offline is True
    assert get_model("nope") is None


def test_configured_default_model_wins(app: Flask) -> None:
    app.config["DEFAULT_MODEL"] = "demo"
    assert default_model_id() == "demo"


@pytest.mark.parametrize(
    ("requested", "size"),
    [
        ({}, (1024, 1024)),
        ({"aspect_ratio": "16:9"}, (1024, 576)),
        ({"aspect_ratio": "9:16"}, (576, 1024)),
        ({"aspect_ratio": "21:9"}, (1024, 440)),
        ({"width": 512}, (512, 512)),
        ({"width": 800, "aspect_ratio": "4:3"}, (800, 600)),
        ({"height": 600, "aspect_ratio": "3:2"}, (896, 600)),
        ({"width": 300, "height": 200}, (300, 200)),
        ({"width": 2048, "aspect_ratio": "9:21"}, (2048, 2048)),
    ],
)
def test_size_from_width_height_and_ratio(requested: dict, size: tuple[int, int]) -> None:
    resolved, _ = resolve_parameters(DEMO_MODEL, requested)
    assert (resolved["width"], resolved["height"]) == size


def test_explicit_size_beats_a_disagreeing_ratio() -> None:
    resolved, warnings = resolve_parameters(
        DEMO_MODEL, {"width": 512, "height": 512, "aspect_ratio": "16:9"}
    )
    assert (resolved["width"], resolved["height"]) == (512, 512)
    assert any("aspect_ratio=16:9 was ignored" in w for w in warnings)


def test_unsupported_and_out_of_range_parameters_warn() -> None:
    resolved, warnings = resolve_parameters(
        DEMO_MODEL, {"guidance_scale": 7.5, "negative_prompt": "blur", "num_inference_steps": 200}
    )
    assert "guidance_scale" not in resolved and "negative_prompt" not in resolved
    assert resolved["num_inference_steps"] == 50
    assert len(warnings) == 3
    assert any("above the demo model's maximum" in w for w in warnings)


def test_defaults_fill_what_was_not_asked() -> None:
    resolved, warnings = resolve_parameters(DEMO_MODEL, {"seed": 1})
    assert warnings == []
    assert resolved["output_format"] == "png"
    assert resolved["num_outputs"] == 1
    assert resolved["num_inference_steps"] == 4


def _task(prompt: str, seed: int, progress: list[float], **params: int) -> GenerationTask:
    full = {"width": 256, "height": 192, "num_inference_steps": 5, "seed": seed, "num_outputs": 1}
    full.update(params)
    return GenerationTask(
        job_id="j",
        model=DEMO_MODEL,
        prompt=prompt,
        params=full,
        report_progress=progress.append,
        remember_provider_job_id=lambda _id: None,
    )


def test_demo_reports_each_step_and_renders_the_size(app: Flask) -> None:
    progress: list[float] = []
    images = DemoProvider().generate(_task("a red kite", 7, progress, num_outputs=2))
    assert progress == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert [im.size for im in images] == [(256, 192), (256, 192)]
    assert images[0].tobytes() != images[1].tobytes()  # each output has its own seed


def test_demo_is_deterministic(app: Flask) -> None:
    def pixels(prompt: str, seed: int) -> str:
        image = DemoProvider().generate(_task(prompt, seed, []))[0]
        return hashlib.sha256(image.tobytes()).hexdigest()

    assert pixels("a red kite", 7) == pixels("a red kite", 7)
    assert pixels("a red kite", 7) != pixels("a red kite", 8)
    assert pixels("a red kite", 7) != pixels("a blue kite", 7)


def test_same_request_gives_identical_files_through_the_queue(client) -> None:
    body = {"parameters": {"seed": 1234, "width": 320, "height": 240}}
    first, second = (
        submit(client, "ocean at night", **body),
        submit(client, "ocean at night", **body),
    )
    other = submit(client, "ocean at night", parameters={"seed": 1235, "width": 320, "height": 240})
    assert run_queue() == 3
    digests = []
    for job in (first, second, other):
        media = client.get(job["status_url"]).get_json()["media"]
        digests.append(client.get(f"/api/v1/media/{media[0]['id']}/info").get_json()["sha256"])
    assert digests[0] == digests[1] != digests[2]
