"""Pictures as job inputs: each way of naming one, the status body's `inputs`, the demo's
image-to-image and mask on pixels, and what happens when an input goes away."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageChops

from tests.helpers import run_queue, submit
from tests.test_uploads import picture, png_claiming, upload
from webapp import accounts, jobs, uploads
from webapp.api.schemas import JobSchema
from webapp.extensions import db
from webapp.models import NEVER, Job, JobInput, Upload, now_utc

API = "/api/v1"


def photo(
    size: tuple[int, int] = (192, 144), colour: tuple[int, int, int] = (200, 40, 40)
) -> bytes:
    """A flat picture with a white square: easy to see on pixels."""
    image = Image.new("RGB", size, colour)
    image.paste((255, 255, 255), (10, 10, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def half_mask(size: tuple[int, int]) -> bytes:
    """White (may change) on the left half, black (keep) on the right."""
    image = Image.new("L", size, 0)
    image.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def sent(client: FlaskClient, data: bytes) -> str:
    response = upload(client, data)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def generate(client: FlaskClient, **parameters: Any) -> Any:
    return client.post(
        f"{API}/jobs/generate",
        json={"prompt": "a lighthouse at night", "model": "demo", "parameters": parameters},
    )


def status(client: FlaskClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/jobs/status/{job_id}")
    assert response.status_code == 200
    return dict(response.get_json())


def output(app: Flask, client: FlaskClient, job_id: str) -> Image.Image:
    body = status(client, job_id)
    assert body["status"] == "completed", body
    response = client.get(body["media"][0]["url"].replace("http://localhost:8000", ""))
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.get_data()))
    image.load()
    return image


# -- the three ways to name a picture ----------------------------------------------------


def test_an_upload_id_is_an_input_listed_in_the_status(client: FlaskClient) -> None:
    upload_id = sent(client, photo())
    response = generate(client, image=upload_id, seed=5)
    assert response.status_code == 201, response.get_json()
    body = status(client, response.get_json()["id"])
    assert body["parameters"]["image"] == upload_id
    assert [(i["role"], i["id"]) for i in body["inputs"]] == [("image", upload_id)]
    assert body["inputs"][0]["url"].endswith(f"/api/v1/uploads/{upload_id}")
    # Without a size, the job renders at the image's own size.
    assert (body["provider_parameters"]["width"], body["provider_parameters"]["height"]) == (
        192,
        144,
    )


def test_a_job_without_pictures_lists_no_inputs(client: FlaskClient) -> None:
    job = submit(client, model="demo")
    assert status(client, job["id"])["inputs"] == []


def test_a_data_uri_is_stored_as_an_upload(client: FlaskClient) -> None:
    data = photo((136, 128))
    response = generate(client, image=data_uri(data))
    assert response.status_code == 201, response.get_json()
    body = status(client, response.get_json()["id"])
    upload_id = body["parameters"]["image"]
    assert not upload_id.startswith("data:"), "the job keeps the upload, not megabytes of text"
    assert body["inputs"][0]["id"] == upload_id
    # The same bytes sent to /uploads are the same upload.
    assert sent(client, data) == upload_id


def test_a_media_item_of_an_earlier_job_is_copied_in(app: Flask, client: FlaskClient) -> None:
    first = submit(client, model="demo", parameters={"width": 128, "height": 128})
    run_queue()
    media_id = status(client, first["id"])["media"][0]["id"]
    response = generate(client, image=media_id)
    assert response.status_code == 201, response.get_json()
    upload_id = status(client, response.get_json()["id"])["parameters"]["image"]
    assert upload_id != media_id
    # Deleting the media item later leaves the new job's input alone.
    assert client.delete(f"{API}/media/{media_id}").status_code == 204
    assert client.get(f"{API}/uploads/{upload_id}").status_code == 200


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("not-an-id", "input_invalid"),
        ("00000000-0000-4000-8000-000000000000", "input_not_found"),
        ("data:image/png;base64,@@@@", "data_uri_invalid"),
        ("data:text/plain;base64,aGVsbG8=", "input_invalid"),
        (data_uri(b"not a picture at all"), "image_type"),
        (data_uri(picture("PNG", (64, 48))[:-40]), "image_invalid"),
        (data_uri(png_claiming(50_000, 50_000)), "image_too_large"),
        (data_uri(b""), "file_empty"),
    ],
)
def test_a_bad_picture_is_a_422_naming_the_parameter(
    client: FlaskClient, value: str, kind: str
) -> None:
    response = generate(client, image=value)
    assert response.status_code == 422, response.get_json()
    (item,) = response.get_json()["detail"]
    assert item["type"] == kind
    assert item["loc"] == ["body", "parameters", "image"]
    assert len(str(item["input"] or "")) <= 80, "a data URI is not echoed back whole"
    assert db.session.query(JobInput).count() == 0


def test_a_data_uri_over_the_upload_limit_is_refused(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_UPLOAD_BYTES"] = 1000
    response = generate(client, image=data_uri(photo((400, 400)) + b"\0" * 2000))
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["type"] == "image_too_large"


def test_a_body_with_two_large_data_uris_is_taken(app: Flask, client: FlaskClient) -> None:
    # Larger than the 1 MB of an ordinary JSON body: the generate endpoint makes room.
    noise = Image.frombytes("RGB", (700, 700), bytes(range(256)) * (700 * 700 * 3 // 256 + 1))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=0)
    big = buffer.getvalue()
    assert len(data_uri(big)) > 1024 * 1024
    response = generate(client, image=data_uri(big), mask=data_uri(half_mask((700, 700))))
    assert response.status_code == 201, response.get_json()


def test_another_users_pictures_are_not_found(app: Flask, client: FlaskClient) -> None:
    """With accounts on, another user's upload or media item answers exactly like a missing
    one (422 input_not_found); the owner's own work; and the status lists only ids."""
    app.config["AUTH"] = "on"
    alice = accounts.create_user("alice", "correct horse battery", admin=True)
    bob = accounts.create_user("bob", "correct horse battery")
    keys = {
        user.name: {
            "Authorization": f"Bearer {accounts.create_key(user, 'k', ['read', 'generate'])[1]}"
        }
        for user in (alice, bob)
    }
    response = client.post(
        f"{API}/uploads",
        data={"file": (io.BytesIO(photo()), "p.png")},
        content_type="multipart/form-data",
        headers=keys["alice"],
    )
    upload_id = response.get_json()["id"]
    first = client.post(
        f"{API}/jobs/generate",
        json={"prompt": "a fox", "model": "demo", "parameters": {"width": 128, "height": 128}},
        headers=keys["alice"],
    ).get_json()["id"]
    run_queue()
    media_id = client.get(f"{API}/jobs/status/{first}", headers=keys["alice"]).get_json()["media"][
        0
    ]["id"]
    missing = "00000000-0000-4000-8000-000000000000"
    answers = {}
    for name, reference in (("upload", upload_id), ("media", media_id), ("missing", missing)):
        answer = client.post(
            f"{API}/jobs/generate",
            json={"prompt": "a fox", "model": "demo", "parameters": {"image": reference}},
            headers=keys["bob"],
        )
        assert answer.status_code == 422
        item = answer.get_json()["detail"][0]
        answers[name] = (item["type"], item["msg"])
    assert answers["upload"] == answers["media"] == answers["missing"]
    assert answers["missing"][0] == "input_not_found"
    for reference in (upload_id, media_id):
        own = client.post(
            f"{API}/jobs/generate",
            json={"prompt": "a fox", "model": "demo", "parameters": {"image": reference}},
            headers=keys["alice"],
        )
        assert own.status_code == 201, own.get_json()
        body = client.get(own.headers["Location"], headers=keys["alice"]).get_json()
        assert "signature=" in body["inputs"][0]["url"], "signed like media URLs"


# -- what a model takes ------------------------------------------------------------------


def test_models_declare_their_inputs(client: FlaskClient) -> None:
    models = {m["id"]: m for m in client.get(f"{API}/models").get_json()["models"]}
    assert models["demo"]["inputs"] == ["image", "mask"]


def test_a_mask_without_an_image_is_refused(client: FlaskClient) -> None:
    response = generate(client, mask=sent(client, half_mask((64, 64))))
    assert response.status_code == 422
    (item,) = response.get_json()["detail"]
    assert (item["type"], item["loc"]) == ("mask_without_image", ["body", "parameters", "mask"])


@pytest.mark.parametrize("strength", [-0.1, 1.5, "0.5"])
def test_prompt_strength_is_between_0_and_1(client: FlaskClient, strength: Any) -> None:
    response = generate(client, image=sent(client, photo()), prompt_strength=strength)
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["body", "parameters", "prompt_strength"]


# -- the demo's image-to-image and mask, on pixels ---------------------------------------


def test_strength_zero_keeps_the_input_and_one_is_the_drawing(
    app: Flask, client: FlaskClient
) -> None:
    data = photo((128, 128))
    upload_id = sent(client, data)
    kept = generate(client, image=upload_id, prompt_strength=0.0, seed=3).get_json()["id"]
    drawn = generate(client, image=upload_id, prompt_strength=1.0, seed=3).get_json()["id"]
    plain = submit(
        client,
        "a lighthouse at night",
        model="demo",
        parameters={"width": 128, "height": 128, "seed": 3},
    )["id"]
    run_queue()
    source = Image.open(io.BytesIO(data)).convert("RGB")
    assert ImageChops.difference(output(app, client, kept).convert("RGB"), source).getbbox() is None
    assert (
        ImageChops.difference(
            output(app, client, drawn).convert("RGB"), output(app, client, plain).convert("RGB")
        ).getbbox()
        is None
    )


def test_the_same_request_gives_the_same_pixels(app: Flask, client: FlaskClient) -> None:
    upload_id = sent(client, photo((128, 128)))
    ids = [
        generate(client, image=upload_id, prompt_strength=0.5, seed=9).get_json()["id"]
        for _ in range(2)
    ]
    run_queue()
    first, second = (output(app, client, i).convert("RGB") for i in ids)
    assert ImageChops.difference(first, second).getbbox() is None


def test_pixels_outside_the_mask_keep_the_input_exactly(app: Flask, client: FlaskClient) -> None:
    data = photo((200, 136))
    image_id = sent(client, data)
    # A mask of another size is scaled to the image.
    mask_id = sent(client, half_mask((100, 68)))
    job_id = generate(client, image=image_id, mask=mask_id, prompt_strength=1.0).get_json()["id"]
    run_queue()
    result = output(app, client, job_id).convert("RGB")
    assert result.size == (200, 136)
    source = Image.open(io.BytesIO(data)).convert("RGB")
    right = (102, 0, 200, 136)  # past the scaled edge, which is soft
    left = (0, 0, 98, 136)
    assert ImageChops.difference(result.crop(right), source.crop(right)).getbbox() is None
    assert ImageChops.difference(result.crop(left), source.crop(left)).getbbox() is not None
    roles = [i["role"] for i in status(client, job_id)["inputs"]]
    assert roles == ["image", "mask"]


# -- lifetimes -----------------------------------------------------------------------------


def test_an_upload_a_job_uses_lives_as_long_as_its_media(app: Flask, client: FlaskClient) -> None:
    upload_id = sent(client, photo())
    generate(client, image=upload_id)
    row = db.session.get(Upload, upload_id)
    assert row.expires_at > now_utc() + timedelta(days=29)
    # The sweep a day later leaves it.
    assert uploads.sweep_expired(now_utc() + timedelta(days=2)) == 0
    info = client.get(f"{API}/uploads/{upload_id}/info").get_json()
    assert info["expires_at"] > (now_utc() + timedelta(days=29)).isoformat()[:10]


def test_with_retention_off_an_input_is_kept_for_ever(app: Flask, client: FlaskClient) -> None:
    app.config["RETENTION_DAYS"] = 0
    upload_id = sent(client, photo())
    generate(client, image=upload_id)
    assert db.session.get(Upload, upload_id).expires_at == NEVER
    assert client.get(f"{API}/uploads/{upload_id}/info").get_json()["expires_at"] is None


def test_a_waiting_job_keeps_its_input_from_the_sweep(app: Flask, client: FlaskClient) -> None:
    upload_id = sent(client, photo())
    generate(client, image=upload_id)
    assert uploads.sweep_expired(now_utc() + timedelta(days=400)) == 0
    assert db.session.get(Upload, upload_id) is not None


def test_an_input_deleted_before_the_job_runs_fails_it_clearly(
    app: Flask, client: FlaskClient
) -> None:
    upload_id = sent(client, photo())
    job_id = generate(client, image=upload_id).get_json()["id"]
    assert client.delete(f"{API}/uploads/{upload_id}").status_code == 204
    run_queue()
    body = status(client, job_id)
    assert body["status"] == "failed"
    assert f"upload {upload_id}" in body["error_message"]
    assert "deleted before the job ran" in body["error_message"]
    assert body["retry_count"] == 0, "no retry can bring it back"


def test_an_input_file_lost_from_storage_fails_the_job(app: Flask, client: FlaskClient) -> None:
    upload_id = sent(client, photo())
    job_id = generate(client, image=upload_id).get_json()["id"]
    row = db.session.get(Upload, upload_id)
    (Path(app.config["MEDIA_ROOT"]) / row.storage_path).unlink()
    run_queue()
    assert status(client, job_id)["status"] == "failed"


def test_deleting_a_job_keeps_an_input_another_job_uses(app: Flask, client: FlaskClient) -> None:
    upload_id = sent(client, photo())
    first = generate(client, image=upload_id).get_json()["id"]
    second = generate(client, image=upload_id).get_json()["id"]
    run_queue()
    jobs.delete_job(first)  # as the gallery's Delete does
    second_media = status(client, second)["media"][0]["id"]
    assert client.delete(f"{API}/media/{second_media}").status_code == 204
    assert client.get(f"{API}/uploads/{upload_id}").status_code == 200
    assert [i["id"] for i in status(client, second)["inputs"]] == [upload_id]


def test_deleting_the_last_job_gives_an_old_input_back_to_the_sweep(
    app: Flask, client: FlaskClient
) -> None:
    upload_id = sent(client, photo())
    job_id = generate(client, image=upload_id).get_json()["id"]
    run_queue()
    row = db.session.get(Upload, upload_id)
    row.created_at = now_utc() - timedelta(days=3)  # sent long ago
    db.session.commit()
    path = Path(app.config["MEDIA_ROOT"]) / row.storage_path
    jobs.delete_job(job_id)  # as the gallery's Delete does
    assert db.session.get(Upload, upload_id) is None
    assert not path.exists()


def test_deleting_the_only_job_of_a_fresh_input_leaves_it_its_day(
    app: Flask, client: FlaskClient
) -> None:
    upload_id = sent(client, photo())
    job_id = generate(client, image=upload_id).get_json()["id"]
    run_queue()
    jobs.delete_job(job_id)  # as the gallery's Delete does
    row = db.session.get(Upload, upload_id)
    assert row.expires_at <= now_utc() + timedelta(hours=24)
    assert uploads.sweep_expired(now_utc() + timedelta(hours=25)) == 1


def test_the_status_body_of_a_job_with_inputs_equals_the_documented_schema(
    app: Flask, client: FlaskClient
) -> None:
    image_id, mask_id = sent(client, photo()), sent(client, half_mask((64, 64)))
    job_id = generate(client, image=image_id, mask=mask_id).get_json()["id"]
    run_queue()
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    documented = json.loads(json.dumps(JobSchema().dump(job)))
    assert status(client, job_id) == documented
    assert [i["role"] for i in documented["inputs"]] == ["image", "mask"]


def test_only_data_uris_may_make_a_body_larger_than_1_mb(client: FlaskClient) -> None:
    body = {
        "prompt": "a fox",
        "model": "demo",
        "parameters": {"image": data_uri(photo())},
        "metadata": {"blob": "y" * (1024 * 1024)},
    }
    response = client.post(f"{API}/jobs/generate", json=body)
    assert response.status_code == 413
    assert "data URIs aside" in response.get_json()["detail"]
    assert db.session.query(JobInput).count() == 0
