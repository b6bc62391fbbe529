"""Pictures as inputs to Replicate's models, through the fake Replicate: what each model is
sent, inline as data URIs or through the files API, and the exact bytes that arrive."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.fake_replicate import FakeReplicate
from tests.test_replicate import TOKEN, run_to_end
from webapp.extensions import db
from webapp.media import media_root
from webapp.models import Upload

API = "/api/v1"


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate(TOKEN) as server:
        yield server


@pytest.fixture
def app_config(app_config: dict[str, Any], fake: FakeReplicate) -> dict[str, Any]:
    return {**app_config, **fake.settings()}


def picture(size: tuple[int, int] = (320, 240), noisy: bool = False) -> bytes:
    if noisy:  # does not compress: well over the data URI threshold
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (30, 90, 160))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def mask(size: tuple[int, int]) -> bytes:
    image = Image.new("L", size, 0)
    image.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def sent(client: FlaskClient, data: bytes) -> str:
    response = client.post(
        f"{API}/uploads",
        data={"file": (io.BytesIO(data), "p.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def stored(app: Flask, upload_id: str) -> bytes:
    row = db.session.get(Upload, upload_id)
    return (media_root() / row.storage_path).read_bytes()


def generate(client: FlaskClient, model: str, **parameters: Any) -> Any:
    return client.post(
        f"{API}/jobs/generate",
        json={"prompt": "make it night", "model": model, "parameters": parameters},
    )


def run(client: FlaskClient, model: str, **parameters: Any) -> str:
    response = generate(client, model, **parameters)
    assert response.status_code == 201, response.get_json()
    job_id = str(response.get_json()["id"])
    job = run_to_end(job_id)
    assert job.status == "completed", job.error_message
    return job_id


def data_uri_bytes(value: str) -> bytes:
    header, _, payload = value.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64")
    return base64.b64decode(payload)


def test_models_declare_their_inputs(client: FlaskClient) -> None:
    models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
    assert models["flux-schnell"]["inputs"] == []
    assert models["flux-dev"]["inputs"] == ["image"]
    assert models["flux-1.1-pro"]["inputs"] == ["image"]
    assert models["sdxl"]["inputs"] == ["image", "mask"]
    assert models["flux-kontext-pro"]["inputs"] == ["image"]
    assert models["flux-kontext-pro"]["provider"] == "replicate"


@pytest.mark.parametrize(
    ("model", "role"),
    [("flux-schnell", "image"), ("flux-dev", "mask"), ("flux-kontext-pro", "mask")],
)
def test_an_input_the_model_cannot_use_is_a_422(
    client: FlaskClient, fake: FakeReplicate, model: str, role: str
) -> None:
    upload_id = sent(client, picture())
    parameters = {"image": upload_id, role: upload_id}
    response = generate(client, model, **parameters)
    assert response.status_code == 422
    items = response.get_json()["detail"]
    assert [i["loc"] for i in items if i["type"] == "input_unsupported"] == [
        ["body", "parameters", role]
    ]
    assert not fake.calls("create"), "nothing reached Replicate"


def test_flux_dev_gets_image_and_strength_inline(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    upload_id = sent(client, picture())
    run(client, "flux-dev", image=upload_id, prompt_strength=0.6, megapixels="0.25")
    (prediction,) = fake.created
    assert prediction.input["prompt_strength"] == 0.6
    assert prediction.input["image"].startswith("data:image/png;base64,")
    assert data_uri_bytes(prediction.input["image"]) == stored(app, upload_id)
    assert prediction.received["image"] == stored(app, upload_id)
    assert not fake.calls("upload"), "a small picture needs no file upload"


def test_flux_dev_without_an_image_sends_no_strength(
    client: FlaskClient, fake: FakeReplicate
) -> None:
    run(client, "flux-dev", megapixels="0.25")
    assert "prompt_strength" not in fake.created[0].input
    assert "image" not in fake.created[0].input


def test_a_large_input_goes_through_the_files_api(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    app.config["REPLICATE_DATA_URI_MAX_BYTES"] = 4096
    upload_id = sent(client, picture((256, 256), noisy=True))
    assert len(stored(app, upload_id)) > 4096
    run(client, "flux-dev", image=upload_id, megapixels="0.25")
    (upload_call,) = fake.calls("upload")
    name, content_type, data = upload_call.body["content"]
    assert (content_type, data) == ("image/png", stored(app, upload_id))
    assert name == f"image-{upload_id}.png"
    assert upload_call.authorization == f"Bearer {fake.token}"
    (prediction,) = fake.created
    assert prediction.input["image"] == f"{fake.url}/v1/files/{next(iter(fake.files))}"
    assert prediction.received["image"] == stored(app, upload_id)


def test_a_failed_file_upload_is_retried(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    app.config["REPLICATE_DATA_URI_MAX_BYTES"] = 4096
    upload_id = sent(client, picture((256, 256), noisy=True))
    fake.fail("upload", 503)
    job_id = run(client, "flux-dev", image=upload_id, megapixels="0.25")
    assert len(fake.calls("upload")) == 2
    assert client.get(f"{API}/jobs/status/{job_id}").get_json()["retry_count"] == 1


def test_flux_pro_gets_the_image_as_image_prompt(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    upload_id = sent(client, picture())
    job_id = run(client, "flux-1.1-pro", image=upload_id, width=512, height=384)
    (prediction,) = fake.created
    assert "image" not in prediction.input
    assert prediction.received["image_prompt"] == stored(app, upload_id)
    body = client.get(f"{API}/jobs/status/{job_id}").get_json()
    assert body["provider_parameters"]["image_prompt"] == upload_id  # the id, not the bytes
    assert body["inputs"][0]["id"] == upload_id


def test_sdxl_inpaints_with_image_mask_and_strength(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    image_id = sent(client, picture((320, 240)))
    mask_id = sent(client, mask((160, 120)))  # another size: scaled to the image
    job_id = run(client, "sdxl", image=image_id, mask=mask_id, prompt_strength=0.9,
                 num_inference_steps=2)  # fmt: skip
    (prediction,) = fake.created
    assert prediction.received["image"] == stored(app, image_id)
    sent_mask = Image.open(io.BytesIO(prediction.received["mask"]))
    assert (sent_mask.mode, sent_mask.size) == ("L", (320, 240))
    assert sent_mask.getpixel((10, 120)) == 255 and sent_mask.getpixel((310, 120)) == 0
    assert prediction.input["prompt_strength"] == 0.9
    # The output has the image's size (the job took it, as no size was asked).
    media = client.get(f"{API}/jobs/status/{job_id}").get_json()["media"]
    assert (media[0]["width"], media[0]["height"]) == (320, 240)


def test_kontext_edits_the_picture_at_its_own_shape(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    upload_id = sent(client, picture((300, 200)))
    response = generate(client, "flux-kontext-pro", image=upload_id, safety_tolerance=5)
    assert response.status_code == 201
    assert any("safety_tolerance=5" in w for w in response.get_json()["warnings"])
    job = run_to_end(response.get_json()["id"])
    assert job.status == "completed", job.error_message
    (prediction,) = fake.created
    assert prediction.model == "black-forest-labs/flux-kontext-pro"
    assert prediction.input["aspect_ratio"] == "match_input_image"
    assert prediction.input["safety_tolerance"] == 2
    assert prediction.received["input_image"] == stored(app, upload_id)
    media = client.get(f"{API}/jobs/status/{job.id}").get_json()["media"]
    assert (media[0]["width"], media[0]["height"]) == (300, 200)


def test_kontext_draws_from_text_alone(client: FlaskClient, fake: FakeReplicate) -> None:
    run(client, "flux-kontext-pro", aspect_ratio="16:9")
    (prediction,) = fake.created
    assert prediction.input["aspect_ratio"] == "16:9"
    assert "input_image" not in prediction.input


def test_a_data_uri_and_a_media_item_reach_replicate_as_the_same_bytes(
    app: Flask, client: FlaskClient, fake: FakeReplicate
) -> None:
    data = picture((200, 200))
    uri = f"data:image/png;base64,{base64.b64encode(data).decode()}"
    first = run(client, "flux-kontext-pro", image=uri)
    media_id = client.get(f"{API}/jobs/status/{first}").get_json()["media"][0]["id"]
    run(client, "flux-kontext-pro", image=media_id)
    first_input, second_input = (p.received["input_image"] for p in fake.created)
    assert Image.open(io.BytesIO(first_input)).size == (200, 200)
    assert Image.open(io.BytesIO(second_input)).size == (200, 200)  # the first job's output
