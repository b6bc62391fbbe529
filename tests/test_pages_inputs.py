"""The create form's pictures through the test client: a file, a kept or referenced picture,
a painted mask, problems shown on the picture field, and the pages that show inputs."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from PIL import Image

from tests.helpers import csrf_token, run_queue, submit
from webapp import accounts, auth
from webapp.extensions import db
from webapp.models import Upload, User
from webapp.providers.demo import DEMO_MODEL, DemoProvider
from webapp.uploads import UPLOAD_LIFETIME

HX = {"HX-Request": "true"}
PASSWORD = "correct horse battery"


def png(size: tuple[int, int] = (64, 48), color: Any = (200, 40, 40), mode: str = "RGB") -> bytes:
    """A PNG of one colour."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def mask_png(size: tuple[int, int] = (64, 48)) -> bytes:
    """A mask: black, with its left half white."""
    image = Image.new("L", size, 0)
    image.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def post_form(
    client: FlaskClient,
    fields: dict[str, Any],
    files: dict[str, tuple[bytes, str]] | None = None,
    htmx: bool = True,
) -> Any:
    """Post the create form as a browser does: multipart, with an empty chooser by default."""
    g.pop("csrf_token", None)  # the test's one app context would hand another client's on
    data: dict[str, Any] = {"csrf_token": csrf_token(client), "model": "demo", **fields}
    chosen = {"image_file": (b"", ""), **(files or {})}
    for name, (content, filename) in chosen.items():
        data[name] = (io.BytesIO(content), filename)
    return client.post(
        "/jobs", data=data, content_type="multipart/form-data", headers=HX if htmx else {}
    )


def newest_job(client: FlaskClient) -> dict[str, Any]:
    job = client.get("/api/v1/jobs").get_json()["jobs"][0]
    return client.get(f"/api/v1/jobs/status/{job['id']}").get_json()


def roles(status: dict[str, Any]) -> dict[str, str]:
    return {item["role"]: item["id"] for item in status["inputs"]}


def hidden_value(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}"[^>]*value="([^"]*)"', html)
    assert match, f"no hidden {name} field"
    return match.group(1)


def finished_media(client: FlaskClient, prompt: str = "a harbour", **headers: str) -> str:
    """The media id of a finished small job."""
    job = submit(client, prompt, parameters={"width": 192, "height": 128})
    run_queue()
    status = client.get(job["status_url"], headers=headers).get_json()
    assert status["status"] == "completed", status
    return str(status["media"][0]["id"])


class TestPictureFile:
    def test_a_chosen_file_becomes_the_jobs_image(self, client: FlaskClient) -> None:
        response = post_form(
            client,
            {"prompt": "a red door, repainted", "aspect_ratio": "", "prompt_strength": "0.35"},
            {"image_file": (png((320, 160)), "door.png")},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        status = newest_job(client)
        assert list(roles(status)) == ["image"]
        upload = db.session.get(Upload, roles(status)["image"])
        assert upload is not None and (upload.width, upload.height) == (320, 160)
        assert status["parameters"]["prompt_strength"] == 0.35
        # "As the picture" (no aspect ratio): the job takes the picture's shape.
        assert status["provider_parameters"]["width"] == 2 * status["provider_parameters"]["height"]
        run_queue()
        assert newest_job(client)["status"] == "completed"

    def test_a_painted_mask_file_goes_with_it(self, client: FlaskClient, app: Flask) -> None:
        response = post_form(
            client,
            {"prompt": "half repainted", "aspect_ratio": ""},
            {"image_file": (png(), "photo.png"), "mask_file": (mask_png(), "mask.png")},
        )
        assert response.status_code == 200
        found = roles(newest_job(client))
        assert set(found) == {"image", "mask"}
        mask = db.session.get(Upload, found["mask"])
        assert mask is not None
        stored = Image.open(os.path.join(app.config["MEDIA_ROOT"], mask.storage_path))
        assert stored.convert("L").getpixel((5, 5)) == 255
        assert stored.convert("L").getpixel((60, 5)) == 0

    def test_without_a_picture_the_request_is_as_before(self, client: FlaskClient) -> None:
        """An empty chooser and empty references send nothing more than the form did."""
        response = post_form(
            client,
            {"prompt": "no picture", "aspect_ratio": "4:3", "image": "", "mask": ""},
            {"mask_file": (b"", "")},
        )
        assert response.status_code == 200
        status = newest_job(client)
        assert status["inputs"] == []
        assert set(status["parameters"]) == {"aspect_ratio", "seed"}
        assert db.session.query(Upload).count() == 0

    def test_a_picture_over_the_ordinary_body_limit_is_taken(
        self, client: FlaskClient, app: Flask
    ) -> None:
        side = 700  # about 1.5 MB of noise, over MAX_CONTENT_LENGTH (1 MB)
        noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        buffer = io.BytesIO()
        noise.save(buffer, "PNG", compress_level=0)
        assert len(buffer.getvalue()) > app.config["MAX_CONTENT_LENGTH"]
        response = post_form(
            client, {"prompt": "noisy"}, {"image_file": (buffer.getvalue(), "noise.png")}
        )
        assert response.status_code == 200
        assert list(roles(newest_job(client))) == ["image"]


class TestProblemsOnThePictureField:
    @pytest.mark.parametrize(
        ("files", "message"),
        [
            ({"image_file": (b"not a picture at all", "notes.png")}, "PNG, JPEG or WebP"),
            ({"image_file": (b"", "empty.png")}, "The file is empty"),
            (
                {"image_file": (png(), "photo.png"), "mask_file": (b"GIF89a", "mask.png")},
                "PNG, JPEG or WebP",
            ),
        ],
        ids=["not-a-picture", "empty", "bad-mask"],
    )
    def test_a_bad_file_is_422_on_the_field(
        self, client: FlaskClient, files: dict[str, tuple[bytes, str]], message: str
    ) -> None:
        response = post_form(client, {"prompt": "a door"}, files)
        assert response.status_code == 422
        assert response.headers["HX-Retarget"] == "#create-form"
        html = response.get_data(as_text=True)
        error = re.search(r'<p id="picture-error" class="error-text">([^<]*)</p>', html)
        assert error and message in error.group(1), html
        assert 'class="field picture-field' in html and " invalid" in html
        assert 'aria-invalid="true"' in html
        assert client.get("/api/v1/jobs").get_json()["total"] == 0

    def test_a_file_over_the_upload_limit_is_422_on_the_field(
        self, client: FlaskClient, app: Flask
    ) -> None:
        app.config["MAX_UPLOAD_BYTES"] = 1000
        response = post_form(client, {"prompt": "big"}, {"image_file": (os.urandom(5000), "a.png")})
        assert response.status_code == 422
        assert "larger than the limit of 1000 bytes" in response.get_data(as_text=True)

    def test_the_picture_is_kept_when_the_form_comes_back(self, client: FlaskClient) -> None:
        response = post_form(
            client,
            {"prompt": "   "},
            {"image_file": (png((90, 60)), "photo.png"), "mask_file": (mask_png(), "m.png")},
        )
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert "String should not be blank" in html
        image_id, mask_id = hidden_value(html, "image"), hidden_value(html, "mask")
        assert db.session.get(Upload, image_id) is not None
        assert f'src="/uploads/{image_id}" width="90" height="60"' in html
        assert f'data-mask-url="/uploads/{mask_id}"' in html and 'data-edit="on"' in html
        # "As the picture" is the shape chosen with a picture.
        assert re.search(r'<option value="" class="js-picture-ratio" selected', html)
        # Sent again with the kept references, it is the job's image and mask.
        again = post_form(client, {"prompt": "fixed", "image": image_id, "mask": mask_id})
        assert again.status_code == 200
        assert roles(newest_job(client)) == {"image": image_id, "mask": mask_id}

    def test_a_model_that_takes_no_picture_says_so_on_the_field(
        self, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        words_only = dataclasses.replace(DEMO_MODEL, inputs=())
        monkeypatch.setattr(DemoProvider, "models", lambda self: [words_only])
        page = client.get("/").get_data(as_text=True)
        assert '<div id="picture-field"' in page
        assert re.search(r'<div id="picture-field"[^>]*\shidden>', page), "hidden for this model"
        assert 'data-inputs=""' in page
        response = post_form(client, {"prompt": "a door"}, {"image_file": (png(), "p.png")})
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert "cannot use an image" in html
        assert not re.search(r'<div id="picture-field"[^>]*\shidden>', html), "shown with it"


class TestReferences:
    def test_use_as_input_and_edit_open_the_form_with_the_picture(
        self, client: FlaskClient
    ) -> None:
        media_id = finished_media(client)
        job_page = client.get(f"/jobs/{newest_job(client)['id']}").get_data(as_text=True)
        assert f'href="/?image={media_id}">Use as input</a>' in job_page
        assert f'href="/?image={media_id}&amp;edit=1">Edit</a>' in job_page

        html = client.get(f"/?image={media_id}").get_data(as_text=True)
        assert hidden_value(html, "image") == media_id
        assert f'<img class="picture-img" src="/media/{media_id}" width="192" height="128"' in html
        assert "data-edit" not in html
        edit = client.get(f"/?image={media_id}&edit=1").get_data(as_text=True)
        assert 'data-edit="on"' in edit

        response = post_form(client, {"prompt": "from the harbour", "image": media_id})
        assert response.status_code == 200
        status = newest_job(client)
        upload_id = roles(status)["image"]
        assert upload_id != media_id, "a media item is copied into an upload"
        run_queue()
        assert newest_job(client)["status"] == "completed"

    def test_an_unknown_reference_shows_no_picture_and_is_refused(
        self, client: FlaskClient
    ) -> None:
        missing = "0b5e2a8e-3c1d-4c55-9c55-000000000000"
        html = client.get(f"/?image={missing}").get_data(as_text=True)
        assert hidden_value(html, "image") == ""
        assert "picture-img" not in html
        response = post_form(client, {"prompt": "a door", "image": missing})
        assert response.status_code == 422
        assert "No upload or media item has this id" in response.get_data(as_text=True)

    def test_without_htmx_the_form_posts_as_plain_multipart(self, client: FlaskClient) -> None:
        response = post_form(
            client, {"prompt": "no scripts"}, {"image_file": (png(), "p.png")}, htmx=False
        )
        assert response.status_code == 303 and response.headers["Location"] == "/"
        assert list(roles(newest_job(client))) == ["image"]
        bad = post_form(
            client, {"prompt": "no scripts"}, {"image_file": (b"nope", "p.png")}, htmx=False
        )
        assert bad.status_code == 422 and bad.mimetype == "text/html"
        html = bad.get_data(as_text=True)
        assert '<section class="gallery-section"' in html and 'id="picture-error"' in html

    def test_the_form_is_multipart_for_htmx_and_without(self, client: FlaskClient) -> None:
        html = client.get("/").get_data(as_text=True)
        form = re.search(r'<form id="create-form"[^>]*>', html)
        assert form is not None
        assert 'enctype="multipart/form-data"' in form.group(0)
        assert 'hx-encoding="multipart/form-data"' in form.group(0)
        assert 'name="image_file"' in html and 'accept="image/png,image/jpeg,image/webp"' in html


class TestInputsShown:
    def test_cards_and_the_job_page_show_the_inputs(self, client: FlaskClient) -> None:
        post_form(
            client,
            {"prompt": "shown with its inputs", "aspect_ratio": ""},
            {"image_file": (png(), "p.png"), "mask_file": (mask_png(), "m.png")},
        )
        status = newest_job(client)
        found = roles(status)
        card = client.get("/").get_data(as_text=True)
        for label, role in (("Input picture", "image"), ("Mask", "mask")):
            assert f'src="/uploads/{found[role]}" width="48" height="48"' in card
            assert f'alt="{label}"' in card
        page = client.get(f"/jobs/{status['id']}").get_data(as_text=True)
        assert 'class="detail-images with-inputs"' in page
        assert f'<img src="/uploads/{found["image"]}" width="160" height="160"' in page
        assert "<figcaption>Mask</figcaption>" in page
        served = client.get(f"/uploads/{found['image']}")
        assert served.status_code == 200 and served.mimetype == "image/png"
        assert served.headers["X-Content-Type-Options"] == "nosniff"

    def test_a_job_without_inputs_shows_none(self, client: FlaskClient) -> None:
        submit(client, "words only", parameters={"width": 128, "height": 128})
        run_queue()
        page = client.get(f"/jobs/{newest_job(client)['id']}").get_data(as_text=True)
        assert "with-inputs" not in page and "card-input" not in client.get("/").get_data(
            as_text=True
        )

    def test_an_unknown_or_expired_upload_is_not_served(self, client: FlaskClient) -> None:
        assert client.get("/uploads/nope").status_code == 404
        post_form(client, {"prompt": "p"}, {"image_file": (png(), "p.png")})
        upload = db.session.get(Upload, roles(newest_job(client))["image"])
        assert upload is not None
        upload.expires_at = upload.created_at - UPLOAD_LIFETIME
        db.session.commit()
        assert client.get(f"/uploads/{upload.id}").status_code == 410


class TestAccounts:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "AUTH": "on"}

    @pytest.fixture
    def people(self, app: Flask) -> tuple[User, User]:
        accounts.create_user("alice", PASSWORD, admin=True)  # the first user administers
        bob = accounts.create_user("bob", PASSWORD)
        carol = accounts.create_user("carol", PASSWORD)
        return bob, carol

    @staticmethod
    def sign_in(client: FlaskClient, user: User) -> None:
        with client.session_transaction() as session:
            session[auth.SESSION_USER] = user.id
            session[auth.SESSION_EPOCH] = user.session_epoch

    def test_another_users_pictures_are_not_found(
        self, app: Flask, people: tuple[User, User]
    ) -> None:
        bob, carol = people
        bobs, carols = app.test_client(), app.test_client()
        self.sign_in(bobs, bob)
        self.sign_in(carols, carol)
        assert (
            post_form(bobs, {"prompt": "bob's"}, {"image_file": (png(), "p.png")}).status_code
            == 200
        )
        upload = db.session.query(Upload).one()
        assert upload.owner_id == bob.id
        assert bobs.get(f"/uploads/{upload.id}").status_code == 200
        assert carols.get(f"/uploads/{upload.id}").status_code == 404
        cards = bobs.get("/gallery?q=bob", headers=HX).get_data(as_text=True)
        assert f"/uploads/{upload.id}" in cards, "bob's card shows his input"

        media_id = bob_media(app, bobs)
        assert bobs.get(f"/media/{media_id}").status_code == 200
        assert carols.get(f"/media/{media_id}").status_code == 404
        # Carol's form does not show, nor take, Bob's pictures.
        html = carols.get(f"/?image={media_id}").get_data(as_text=True)
        assert hidden_value(html, "image") == "" and "picture-img" not in html
        for reference in (media_id, upload.id):
            refused = post_form(carols, {"prompt": "carol's", "image": reference})
            assert refused.status_code == 422
            assert "No upload or media item has this id" in refused.get_data(as_text=True)


def bob_media(app: Flask, client: FlaskClient) -> str:
    """Bob's finished job's media id (his form, run in-process)."""
    response = post_form(client, {"prompt": "bob's harbour", "width": "192", "height": "128"})
    assert response.status_code == 200
    run_queue()
    card = client.get("/gallery?q=harbour", headers=HX).get_data(as_text=True)
    match = re.search(r"/media/([0-9a-f-]{36})/thumbnail", card)
    assert match, card
    return match.group(1)
