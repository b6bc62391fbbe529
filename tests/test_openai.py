"""The `openai` provider against a fake OpenAI on loopback (tests/fake_openai.py).

Jobs run in this process as the consumer would run them (`run_job.call_local`), talking
real HTTP to the fake: each model's request, sizes, both answer forms, edits with a mask,
what is kept on the job, and how every kind of error ends.
"""

from __future__ import annotations

import io
import logging
import secrets
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.fake_openai import FakeOpenAI, error_body, masked_key
from tests.test_replicate import in_thread, job_body, make_due, reload, run_to_end
from tests.test_replicate_inputs import mask, picture, sent, stored
from webapp.media import media_root
from webapp.models import Job
from webapp.providers import available_models, default_model_id, get_model
from webapp.providers.base import PermanentProviderError
from webapp.providers.mapping import resolve_parameters
from webapp.providers.openai.client import DEFAULT_BASE_URL, MAX_IMAGE_BYTES, Settings
from webapp.tasks import run_job

KEY = f"sk-proj-{secrets.token_urlsafe(24)}"  # unique, so finding it anywhere is meaningful
API = "/api/v1"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as server:
        yield server


@pytest.fixture
def app_config(app_config: dict[str, Any], fake: FakeOpenAI) -> dict[str, Any]:
    return {**app_config, **fake.settings()}


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything logged at any level by our code and the HTTP libraries."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    watched = [logging.getLogger(), logging.getLogger("webapp")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield text
    for logger, level in zip(watched, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def generate(client: FlaskClient, model: str, **parameters: Any) -> Any:
    return client.post(
        f"{API}/jobs/generate",
        json={"prompt": "a lighthouse at dusk", "model": model, "parameters": parameters},
    )


def start(client: FlaskClient, model: str = "gpt-image-1", **parameters: Any) -> str:
    response = generate(client, model, **parameters)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def run(client: FlaskClient, model: str = "gpt-image-1", **parameters: Any) -> Job:
    job = run_to_end(start(client, model, **parameters))
    assert job.status == "completed", job.error_message
    return job


def claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says it is width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def opened(media: Any) -> Image.Image:
    image = Image.open(media_root() / media.storage_path)
    image.load()
    return image


# -- the registry ---------------------------------------------------------------------


def test_models_are_listed_with_a_key(client: FlaskClient) -> None:
    models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
    gpt, dalle = models["gpt-image-1"], models["dall-e-3"]
    assert gpt["provider"] == dalle["provider"] == "openai"
    assert gpt["inputs"] == ["image", "mask"] and dalle["inputs"] == []
    params = {m: {p["name"]: p for p in models[m]["parameters"]} for m in models}
    assert params["gpt-image-1"]["quality"]["choices"] == ["auto", "low", "medium", "high"]
    assert params["gpt-image-1"]["background"]["choices"] == ["auto", "transparent", "opaque"]
    assert params["gpt-image-1"]["num_outputs"]["maximum"] == 4
    assert params["dall-e-3"]["num_outputs"]["maximum"] == 1
    assert params["dall-e-3"]["style"]["choices"] == ["vivid", "natural"]
    assert "seed" not in params["gpt-image-1"] and "background" not in params["dall-e-3"]
    assert default_model_id() == "demo", "an OpenAI key does not change the default model"


def test_no_key_no_models(app: Flask) -> None:
    app.config["OPENAI_API_KEY"] = ""
    assert not {"gpt-image-1", "dall-e-3"} & set(available_models())


@pytest.mark.parametrize(
    ("model", "name", "value", "kind"),
    [
        ("gpt-image-1", "quality", "hd", "literal_error"),
        ("gpt-image-1", "background", "clear", "literal_error"),
        ("gpt-image-1", "style", "vivid", "extra_forbidden"),
        ("dall-e-3", "quality", "high", "literal_error"),
        ("dall-e-3", "background", "transparent", "extra_forbidden"),
        ("dall-e-3", "moderation", "low", "extra_forbidden"),
    ],
)
def test_model_specific_parameters_are_validated(
    client: FlaskClient, fake: FakeOpenAI, model: str, name: str, value: Any, kind: str
) -> None:
    response = generate(client, model, **{name: value})
    assert response.status_code == 422
    [error] = response.get_json()["detail"]
    assert (error["type"], error["loc"]) == (kind, ["body", "parameters", name])
    assert fake.requests == []


def test_a_picture_for_dall_e_3_is_a_422(client: FlaskClient, fake: FakeOpenAI) -> None:
    response = generate(client, "dall-e-3", image=sent(client, picture()))
    assert response.status_code == 422
    [error] = response.get_json()["detail"]
    assert (error["type"], error["loc"]) == ("input_unsupported", ["body", "parameters", "image"])
    assert fake.requests == []


# -- mapping our parameters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "requested", "expected", "warning"),
    [
        pytest.param(
            "gpt-image-1",
            {},
            {"size": "1024x1024", "n": 1, "quality": "auto", "background": "auto",
             "moderation": "auto", "output_format": "png", "output_quality": 90},
            None,
            id="gpt-defaults",
        ),
        pytest.param(
            "gpt-image-1", {"width": 1536, "height": 1024}, {"size": "1536x1024"}, None,
            id="gpt-allowed-size",
        ),
        pytest.param(
            "gpt-image-1",
            {"width": 1000, "height": 600},
            {"size": "1536x1024", "resize_to": "1000x600"},
            "1000x600 was rendered at 1536x1024 and resized to 1000x600",
            id="gpt-exact-size",
        ),
        pytest.param(
            "gpt-image-1", {"aspect_ratio": "2:3"}, {"size": "1024x1536"}, None, id="gpt-ratio"
        ),
        pytest.param(
            "gpt-image-1",
            {"aspect_ratio": "16:9"},
            {"size": "1536x1024", "resize_to": "1536x864"},
            "aspect_ratio=16:9 was rendered at 1536x1024 and cropped to 1536x864",
            id="gpt-ratio-it-lacks",
        ),
        pytest.param(
            "gpt-image-1", {"num_outputs": 3}, {"n": 3}, None, id="gpt-n"
        ),
        pytest.param(
            "gpt-image-1",
            {"background": "transparent", "output_format": "jpg"},
            {"background": "opaque", "output_format": "jpg"},
            "background=transparent needs output_format png or webp",
            id="gpt-no-transparent-jpeg",
        ),
        pytest.param(
            "dall-e-3",
            {},
            {"size": "1024x1024", "n": 1, "quality": "standard", "style": "vivid"},
            None,
            id="dalle-defaults",
        ),
        pytest.param(
            "dall-e-3",
            {"aspect_ratio": "9:16"},
            {"size": "1024x1792", "resize_to": "1008x1792"},
            "dall-e-3 renders only 1024x1024, 1792x1024, 1024x1792: aspect_ratio=9:16",
            id="dalle-ratio",
        ),
        pytest.param(
            "dall-e-3",
            {"num_outputs": 3},
            {"n": 1},
            "num_outputs=3 is above the dall-e-3 model's maximum; 1 was used",
            id="dalle-one-image",
        ),
        pytest.param(
            "dall-e-3",
            {"seed": 7},
            {"n": 1},
            "seed is not supported by the dall-e-3 model",
            id="dalle-no-seed",
        ),
    ],
)  # fmt: skip
def test_parameters_map_to_openai_fields(
    app: Flask, model: str, requested: dict, expected: dict, warning: str | None
) -> None:
    resolved, warnings = resolve_parameters(get_model(model), requested)
    assert resolved.items() >= expected.items()
    assert not {"width", "height", "aspect_ratio", "num_outputs", "seed"} & resolved.keys()
    assert ("resize_to" in resolved) == ("resize_to" in expected)
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning in warnings[0], warnings


# -- each model's request and answer ----------------------------------------------------


def test_gpt_image_request_and_usage(client: FlaskClient, fake: FakeOpenAI) -> None:
    job = run(client, num_outputs=2, quality="low", output_format="webp", output_quality=70,
              width=1536, height=1024)  # fmt: skip
    [call] = fake.calls("generations")
    assert call.path == "/v1/images/generations"
    assert call.authorization == f"Bearer {KEY}"
    assert call.content_type == "application/json"
    assert call.body == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse at dusk",
        "n": 2,
        "quality": "low",
        "background": "auto",
        "moderation": "auto",
        "size": "1536x1024",
        "output_format": "webp",
        "output_compression": 70,
    }
    assert job.progress == 100
    assert [(m.width, m.height, m.mime_type) for m in job.media] == [
        (1536, 1024, "image/webp"),
        (1536, 1024, "image/webp"),
    ]
    body = job_body(client, job.id)
    [answer] = fake.answers
    assert body["provider_output"]["usage"] == answer["usage"]
    assert body["provider_output"]["usage"]["output_tokens"] == 2 * 408
    assert body["provider_output"]["request_id"].startswith("req_")
    assert "revised_prompt" not in body["provider_output"]
    assert body["provider_parameters"]["size"] == "1536x1024"


def test_dall_e_3_request_and_revised_prompt(client: FlaskClient, fake: FakeOpenAI) -> None:
    fake.plan_next(revised_prompt="A tall striped lighthouse on a rocky shore at dusk.")
    job = run(client, "dall-e-3", quality="hd", style="natural", aspect_ratio="16:9")
    [call] = fake.calls("generations")
    assert call.body == {
        "model": "dall-e-3",
        "prompt": "a lighthouse at dusk",
        "n": 1,
        "size": "1792x1024",
        "quality": "hd",
        "style": "natural",
        "response_format": "b64_json",
    }
    [media] = job.media
    assert (media.width, media.height, media.mime_type) == (1792, 1008, "image/png")
    output = job_body(client, job.id)["provider_output"]
    assert output["revised_prompt"] == "A tall striped lighthouse on a rocky shore at dusk."
    assert "usage" not in output
    assert fake.calls("file") == [], "a base64 answer needs no download"


def test_url_answers_are_downloaded_without_the_key(client: FlaskClient, fake: FakeOpenAI) -> None:
    fake.plan_next(answer="url")  # as a compatible server may answer whatever was asked
    job = run(client, "dall-e-3")
    [download] = fake.calls("file")
    assert download.authorization is None
    [media] = job.media
    assert (media.width, media.height) == (1024, 1024)
    assert job_body(client, job.id)["provider_output"]["revised_prompt"].startswith("A vivid")


def test_an_exact_size_is_a_centred_cover_crop(client: FlaskClient, fake: FakeOpenAI) -> None:
    response = generate(client, "gpt-image-1", width=600, height=200)
    assert response.get_json()["warnings"] == [
        "gpt-image-1 renders only 1024x1024, 1536x1024, 1024x1536: 600x200 was rendered at "
        "1536x1024 and resized to 600x200"
    ]
    job = run_to_end(response.get_json()["id"])
    assert fake.calls("generations")[0].body["size"] == "1536x1024"
    [media] = job.media
    with opened(media) as image:
        assert image.size == (600, 200)
        assert min(image.convert("RGB").getpixel((300, 100))) > 200  # the disc stays centred
    info = job_body(client, job.id)["media"][0]
    assert (info["width"], info["height"]) == (600, 200)


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_a_transparent_background_keeps_its_alpha(
    client: FlaskClient, fake: FakeOpenAI, output_format: str
) -> None:
    job = run(client, background="transparent", output_format=output_format)
    assert fake.calls("generations")[0].body["background"] == "transparent"
    with opened(job.media[0]) as image:
        assert image.mode == "RGBA"
        assert image.getpixel((2, 2))[3] == 0 and image.getpixel((512, 512))[3] == 255


def test_the_base_url_is_honoured(app: Flask, client: FlaskClient) -> None:
    with FakeOpenAI(KEY, prefix="/localai/v1") as compatible:
        app.config["OPENAI_BASE_URL"] = compatible.base_url + "/"
        run(client)
        assert [c.path for c in compatible.requests] == ["/localai/v1/images/generations"]
    config = {k: v for k, v in app.config.items() if k != "OPENAI_BASE_URL"}
    assert Settings.from_config(config).base_url == DEFAULT_BASE_URL


# -- edits ------------------------------------------------------------------------------


def test_an_edit_sends_the_picture_and_an_alpha_mask(
    app: Flask, client: FlaskClient, fake: FakeOpenAI
) -> None:
    image_id = sent(client, picture((320, 240)))
    mask_id = sent(client, mask((160, 120)))  # another size: the job scales it to the image
    job = run(client, image=image_id, mask=mask_id, quality="medium", moderation="auto")
    assert fake.calls("generations") == []
    [call] = fake.calls("edits")
    assert call.path == "/v1/images/edits" and call.content_type == "multipart/form-data"
    assert call.authorization == f"Bearer {KEY}"
    assert call.form == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse at dusk",
        "n": "1",
        "quality": "medium",
        "background": "auto",
        "size": "1536x1024",
        "output_format": "png",
    }
    name, content_type, data = call.files["image"]
    assert (name, content_type, data) == ("image.png", "image/png", stored(app, image_id))
    name, content_type, data = call.files["mask"]
    assert (name, content_type) == ("mask.png", "image/png")
    with Image.open(io.BytesIO(data)) as sent_mask:
        assert (sent_mask.format, sent_mask.mode, sent_mask.size) == ("PNG", "RGBA", (320, 240))
        assert sent_mask.getpixel((10, 120))[3] == 0, "white (may change) is transparent"
        assert sent_mask.getpixel((310, 120))[3] == 255, "black (keep) is opaque"
    # No size asked: the picture's own, rendered at the nearest shape and resized to it.
    [media] = job.media
    assert (media.width, media.height) == (320, 240)
    body = job_body(client, job.id)
    assert body["provider_output"]["usage"]["input_tokens_details"]["image_tokens"] == 323
    assert body["provider_parameters"]["image"] == image_id  # the id, not the bytes
    assert "moderation" not in body["provider_parameters"]
    assert body["warnings"] == [
        "gpt-image-1 renders only 1024x1024, 1536x1024, 1024x1536: 320x240 was rendered at "
        "1536x1024 and resized to 320x240",
        "moderation is not supported with an image and was ignored",
    ]


def test_an_edit_without_a_mask(app: Flask, client: FlaskClient, fake: FakeOpenAI) -> None:
    image_id = sent(client, picture((256, 256)))
    job = run(client, image=image_id, output_format="jpg", output_quality=60)
    [call] = fake.calls("edits")
    assert set(call.files) == {"image"}
    assert call.form["output_format"] == "jpeg" and call.form["output_compression"] == "60"
    assert call.form["size"] == "1024x1024"
    assert [(m.width, m.height, m.mime_type) for m in job.media] == [(256, 256, "image/jpeg")]


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code", "message"),
    [
        ("dall-e-3", "content_policy_violation", "Your request was rejected as a result of our"),
        ("gpt-image-1", "moderation_blocked", "Your request was rejected by the safety system."),
    ],
)
def test_a_content_policy_refusal_fails_with_openais_message(
    client: FlaskClient, fake: FakeOpenAI, model: str, code: str, message: str
) -> None:
    fake.fail("generations", 400, code=code)
    job = run_to_end(start(client, model))
    assert job.status == "failed" and job.retry_count == 0
    assert job.error_message.startswith(f"OpenAI API error: {message}")
    assert job.error_details["code"] == code and job.error_details["status_code"] == 400
    assert len(fake.calls("generations")) == 1 and job.media == []


def test_a_wrong_key_fails_at_once_and_is_not_echoed(
    app: Flask, client: FlaskClient, fake: FakeOpenAI
) -> None:
    wrong = f"sk-proj-{secrets.token_urlsafe(24)}"
    app.config["OPENAI_API_KEY"] = wrong
    job = run_to_end(start(client))
    assert job.status == "failed" and job.retry_count == 0
    assert job.error_message == (
        "OpenAI API error: Incorrect API key provided: [redacted]. You can find your API key "
        "at https://platform.openai.com/account/api-keys."
    )
    assert job.error_details["code"] == "invalid_api_key"
    shown = str(job_body(client, job.id))
    assert wrong not in shown and masked_key(wrong) not in shown and wrong[-4:] not in shown


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, error_body("Invalid value: 'x'.", param="size", code="invalid_value"),
         "Invalid value: 'x'."),
        (403, error_body("Your organization must be verified to use the model `gpt-image-1`."),
         "Your organization must be verified"),
        (404, error_body("The model `gpt-image-1` does not exist.", code="model_not_found"),
         "The model `gpt-image-1` does not exist."),
        (429, error_body("You exceeded your current quota.", kind="insufficient_quota",
                         code="insufficient_quota"), "You exceeded your current quota."),
        (413, None, "Error 413"),
    ],
)  # fmt: skip
def test_refusals_are_permanent(
    client: FlaskClient, fake: FakeOpenAI, status: int, body: Any, message: str
) -> None:
    fake.fail("generations", status, body=body, retry_after="1")
    job = run_to_end(start(client))
    assert job.status == "failed" and job.retry_count == 0
    assert job.error_message.startswith(f"OpenAI API error: {message}")
    assert job.error_details["status_code"] == status


@pytest.mark.parametrize(
    ("headers", "seconds"), [({"retry_after": "3"}, 3.0), ({"retry_after_ms": "1500"}, 1.5)]
)
def test_a_rate_limit_is_retried_after_what_openai_said(
    client: FlaskClient, fake: FakeOpenAI, headers: dict[str, str], seconds: float
) -> None:
    fake.fail("generations", 429, code="rate_limit_exceeded", **headers)
    job_id = start(client)
    run_job.call_local(job_id)
    job = reload(job_id)
    assert job.status == "retrying" and job.retry_count == 1
    assert job.error_message.startswith("OpenAI API error: Rate limit reached for gpt-image-1")
    # RETRY_MAX_SECONDS is 0.05 in tests: only the header explains this wait.
    wait = (job.run_after - job.updated_at).total_seconds()
    assert seconds - 0.5 <= wait <= seconds + 0.5
    make_due(job_id)
    job = run_to_end(job_id)
    assert job.status == "completed" and len(fake.calls("generations")) == 2


@pytest.mark.parametrize(("route", "status"), [("generations", 500), ("generations", 503),
                                               ("edits", 502), ("file", 503)])  # fmt: skip
def test_5xx_is_retried(client: FlaskClient, fake: FakeOpenAI, route: str, status: int) -> None:
    fake.fail(route, status, retry_after="0")
    if route == "file":
        fake.plan_next(answer="url")
    parameters = {"image": sent(client, picture())} if route == "edits" else {}
    job_id = start(client, "dall-e-3" if route == "file" else "gpt-image-1", **parameters)
    run_job.call_local(job_id)
    job = reload(job_id)
    assert job.status == "retrying" and job.retry_count == 1
    assert job.error_message.startswith("OpenAI API error: ")
    assert job.error_message.endswith(f"(HTTP {status})")
    job = run_to_end(job_id)
    assert job.status == "completed" and len(job.media) == 1


def test_retries_run_out(client: FlaskClient, fake: FakeOpenAI) -> None:
    fake.fail("generations", 500, times=10)
    job = run_to_end(start(client))
    assert job.status == "failed" and job.retry_count == job.max_retries == 3
    assert job.error_message == (
        "OpenAI API error: The server had an error while processing your request. Sorry about "
        "that! (HTTP 500)"
    )
    assert job.error_details["type"] == "server_error"
    assert len(fake.calls("generations")) == 4


def test_a_slow_answer_times_out_and_is_retried(
    app: Flask, client: FlaskClient, fake: FakeOpenAI
) -> None:
    app.config["OPENAI_READ_TIMEOUT"] = 0.2
    fake.hang("generations", 2.0)
    job_id = start(client)
    run_job.call_local(job_id)
    job = reload(job_id)
    assert job.status == "retrying"
    assert job.error_message == (
        f"OpenAI API error: no answer from {fake.url.removeprefix('http://')} within 0.2 s to "
        "POST /images/generations"
    )
    assert run_to_end(job_id).status == "completed"


def test_a_refused_connection_is_retried(app: Flask, client: FlaskClient) -> None:
    from tests.procs import free_port

    port = free_port()
    app.config["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    job_id = start(client)
    run_job.call_local(job_id)
    job = reload(job_id)
    assert job.status == "retrying"
    assert job.error_message.startswith(f"OpenAI API error: connection to 127.0.0.1:{port} failed")


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"output_bytes": b"not an image"}, "an output is not a readable PNG, JPEG or WebP image"),
        # A PNG whose header claims 8000x7000 pixels: refused before any pixel is decoded.
        ({"output_bytes": claiming(8000, 7000)},
         "an output of 8000x7000 pixels is over the limit of 50000000"),
        ({"answer": "url", "content_length": MAX_IMAGE_BYTES + 1},
         f"an answer is larger than {MAX_IMAGE_BYTES} bytes"),
    ],
)  # fmt: skip
def test_unusable_pictures_are_refused(
    client: FlaskClient, fake: FakeOpenAI, plan: dict, message: str
) -> None:
    fake.plan_next(**plan)
    job = run_to_end(start(client, "dall-e-3"))
    assert job.status == "failed" and job.retry_count == 0
    assert job.error_message == f"OpenAI API error: {message}"


def test_an_answer_without_pictures_is_refused(client: FlaskClient, fake: FakeOpenAI) -> None:
    fake.fail("generations", 200, body={"created": 1, "data": []})
    job = run_to_end(start(client))
    assert job.status == "failed"
    assert job.error_message == "OpenAI API error: the answer holds no image"


# -- cancelling and secrecy -------------------------------------------------------------


def test_a_job_cancelled_mid_request_stores_nothing(
    app: Flask, client: FlaskClient, fake: FakeOpenAI
) -> None:
    gate = fake.hold("generations")
    job_id = start(client)
    runner = in_thread(app, run_job.call_local, job_id)
    assert gate.arrived.wait(5)
    assert client.delete(f"{API}/jobs/{job_id}").status_code == 204
    gate.release.set()
    runner.join(5)
    assert not runner.is_alive()
    job = reload(job_id)
    assert job.status == "cancelled" and job.media == []


def test_the_key_never_shows(
    app: Flask, client: FlaskClient, fake: FakeOpenAI, logs: io.StringIO
) -> None:
    fake.fail("generations", 400, code="content_policy_violation")
    failed = run_to_end(start(client, "dall-e-3"))
    fake.fail("generations", 503)
    retried = run_to_end(start(client))
    app.config["OPENAI_BASE_URL"] = "http://127.0.0.1:1/v1"  # nothing listens there
    refused = start(client)
    run_job.call_local(refused)
    assert (failed.status, retried.status, reload(refused).status) == (
        "failed",
        "completed",
        "retrying",
    )
    seen = [logs.getvalue(), client.get(f"{API}/jobs").get_data(as_text=True)]
    assert "gpt-image-1 answered" in seen[0]
    for job_id in (failed.id, retried.id, refused):
        seen.append(client.get(f"{API}/jobs/status/{job_id}").get_data(as_text=True))
        seen.append(client.get(f"/jobs/{job_id}").get_data(as_text=True))
    seen.append(client.get("/").get_data(as_text=True))
    seen.append(client.get(f"{API}/models").get_data(as_text=True))
    assert all(KEY not in text for text in seen)


def test_a_malformed_key_is_not_echoed(app: Flask) -> None:
    bad = f"sk-{secrets.token_hex(8)}\nX-Injected: 1"
    with pytest.raises(PermanentProviderError) as caught:
        Settings.from_config({**app.config, "OPENAI_API_KEY": bad})
    assert caught.value.message == "OpenAI API error: OPENAI_API_KEY is missing or malformed"
