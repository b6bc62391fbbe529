"""The HTML pages through the test client: forms, htmx fragments, security headers, queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from tests.helpers import csrf_token, run_queue, submit
from webapp.extensions import db
from webapp.gallery import Cursor, gallery_page, queue_counts
from webapp.media import media_root
from webapp.models import Job, WebhookEvent, now_utc

HX = {"HX-Request": "true"}


def post_form(client: FlaskClient, url: str, data: dict, htmx: bool = True):
    return client.post(
        url, data={"csrf_token": csrf_token(client), **data}, headers=HX if htmx else {}
    )


class TestSecurity:
    def test_pages_send_a_strict_policy(self, client: FlaskClient) -> None:
        response = client.get("/")
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    def test_state_changes_need_the_csrf_token(self, client: FlaskClient) -> None:
        response = client.post("/jobs", data={"prompt": "no token"}, headers=HX)
        assert response.status_code == 400
        assert client.get("/api/v1/jobs").get_json()["total"] == 0

    def test_the_json_api_needs_no_csrf_token(self, client: FlaskClient) -> None:
        assert client.post("/api/v1/jobs/generate", json={"prompt": "script"}).status_code == 201

    def test_prompts_are_escaped(self, client: FlaskClient) -> None:
        response = post_form(
            client, "/jobs", {"prompt": "<script>alert(1)</script>", "model": "demo"}
        )
        html = response.get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_unknown_job_page_is_an_html_404(self, client: FlaskClient) -> None:
        response = client.get("/jobs/does-not-exist")
        assert response.status_code == 404 and response.mimetype == "text/html"
        assert "Job not found" in response.get_data(as_text=True)
        api = client.get("/api/v1/jobs/status/does-not-exist")
        assert api.status_code == 404 and api.is_json


class TestCreate:
    def test_the_form_creates_a_job_and_answers_a_card(self, client: FlaskClient) -> None:
        response = post_form(
            client,
            "/jobs",
            {"prompt": "a red fox\r\nin snow", "model": "demo", "aspect_ratio": "16:9"},
        )
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        job = client.get("/api/v1/jobs").get_json()["jobs"][0]
        assert f'id="card-{job["id"]}"' in html
        assert 'id="queue-counter"' in html and 'hx-swap-oob="true"' in html
        assert 'hx-trigger="every 1s"' in html, "the poller is switched on"
        status = client.get(f"/api/v1/jobs/status/{job['id']}").get_json()
        assert status["prompt"] == "a red fox\nin snow"
        assert status["provider_parameters"]["aspect_ratio"] == "16:9"
        assert "HX-Request" in response.headers["Vary"]

    def test_invalid_fields_come_back_with_messages(self, client: FlaskClient) -> None:
        response = post_form(
            client, "/jobs", {"prompt": "  ", "model": "demo", "num_inference_steps": "999x"}
        )
        assert response.status_code == 422
        assert response.headers["HX-Retarget"] == "#create-form"
        html = response.get_data(as_text=True)
        assert "String should not be blank" in html
        assert "Input should be a valid integer" in html
        assert client.get("/api/v1/jobs").get_json()["total"] == 0

    def test_without_htmx_the_form_redirects(self, client: FlaskClient) -> None:
        response = post_form(client, "/jobs", {"prompt": "plain form", "model": "demo"}, htmx=False)
        assert response.status_code == 303 and response.headers["Location"] == "/"

    def test_advanced_fields_follow_the_model(self, client: FlaskClient) -> None:
        html = client.get("/partials/advanced?model=demo", headers=HX).get_data(as_text=True)
        assert 'name="num_inference_steps"' in html and 'max="50' in html
        assert 'name="seed"' in html and 'placeholder="random"' in html


class TestJobPage:
    def test_remix_prefills_the_form(self, client: FlaskClient) -> None:
        job = submit(client, "a teal boat", parameters={"seed": 77, "num_inference_steps": 6})
        html = client.get(f"/?remix={job['id']}").get_data(as_text=True)
        assert ">a teal boat</textarea>" in html
        assert 'value="77"' in html and 'value="6"' in html

    def test_vary_seed_submits_a_new_job_with_another_seed(self, client: FlaskClient) -> None:
        job = submit(client, "a teal boat", parameters={"seed": 77, "width": 256, "height": 256})
        response = post_form(client, f"/jobs/{job['id']}/vary", {})
        assert response.status_code == 204
        new_id = response.headers["HX-Redirect"].rsplit("/", 1)[1]
        new = client.get(f"/api/v1/jobs/status/{new_id}").get_json()
        assert new["prompt"] == "a teal boat" and new["parameters"]["width"] == 256
        assert new["parameters"]["seed"] != 77

    def test_delete_removes_the_job_and_its_files(self, client: FlaskClient, app: Flask) -> None:
        job = submit(
            client, "to delete", parameters={"width": 128, "height": 128, "num_outputs": 2}
        )
        run_queue()
        media = client.get(job["status_url"]).get_json()["media"]
        files = list((media_root() / "generated").glob("*")) + list(
            (media_root() / "thumbnails").glob("*")
        )
        assert len(files) == 4
        response = post_form(client, f"/jobs/{job['id']}/delete", {"view": "detail"})
        assert response.headers["HX-Redirect"] == "/"
        assert client.get(job["status_url"]).status_code == 404
        assert client.get(f"/api/v1/media/{media[0]['id']}").status_code == 404
        assert not any(f.exists() for f in files)

    def test_job_page_shows_parameters_and_curl(self, client: FlaskClient) -> None:
        job = submit(
            client, "it's a 'quoted' prompt", parameters={"seed": 5, "width": 128, "height": 128}
        )
        run_queue()
        html = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
        assert "seed" in html and ">5<" in html
        assert "curl -X POST" in html and "http://darkroom.test/api/v1/jobs/generate" in html
        assert "/media/" in html and "Download" in html

    def test_cancel_from_a_card(self, client: FlaskClient) -> None:
        job = submit(client, "cancel me")
        response = post_form(client, f"/jobs/{job['id']}/cancel", {})
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "badge-cancelled" in html
        # All out of band, found by id when the answer lands: the card, the counter, and a
        # new poller that makes any poll still on its way stale.
        assert f'id="card-{job["id"]}"' in html and 'id="poller"' in html
        assert 'id="queue-counter"' in html and html.count('hx-swap-oob="true"') == 3
        # Cancelling again shows the card as it is instead of failing.
        assert post_form(client, f"/jobs/{job['id']}/cancel", {}).status_code == 200


class TestPolling:
    def test_one_poll_refreshes_every_running_card(self, client: FlaskClient) -> None:
        first, second = submit(client, "one"), submit(client, "two")
        response = client.get(f"/poll?id={first['id']}&id={second['id']}", headers=HX)
        html = response.get_data(as_text=True)
        assert html.count('hx-swap-oob="true"') == 4  # two cards, the counter, the poller
        assert "2 waiting" in html and 'hx-trigger="every 1s"' in html

    def test_polling_stops_when_nothing_runs(self, client: FlaskClient) -> None:
        job = submit(client, "done soon", parameters={"width": 128, "height": 128})
        run_queue()
        html = client.get(f"/poll?id={job['id']}", headers=HX).get_data(as_text=True)
        poller = re.search(r'<div id="poller"[^>]*>', html).group(0)
        assert "hx-trigger" not in poller and 'data-active="false"' in poller
        assert "badge-completed" in html


class TestGallery:
    def _jobs(self, app: Flask, prompts: list[str]) -> list[Job]:
        base = now_utc() - timedelta(hours=1)
        rows = [
            Job(prompt=p, model="demo", created_at=base + timedelta(seconds=i), status="completed")
            for i, p in enumerate(prompts)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return rows

    def test_keyset_pages_cover_everything_once(self, app: Flask) -> None:
        rows = self._jobs(app, [f"job {i}" for i in range(30)])
        seen, cursor = [], None
        while True:
            page = gallery_page(cursor, limit=7)
            seen += [j.id for j in page.jobs]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert seen == [r.id for r in reversed(rows)]

    def test_search_matches_every_word_and_escapes_wildcards(self, app: Flask) -> None:
        self._jobs(app, ["Red fox in snow", "red car", "a blue fox", "100% pure", "snake_case"])
        assert [j.prompt for j in gallery_page(query="fox RED").jobs] == ["Red fox in snow"]
        assert [j.prompt for j in gallery_page(query="100%").jobs] == ["100% pure"]
        assert gallery_page(query="%").jobs[0].prompt == "100% pure"
        assert [j.prompt for j in gallery_page(query="e_c").jobs] == ["snake_case"]

    def test_a_damaged_cursor_starts_from_the_top(self, app: Flask) -> None:
        self._jobs(app, ["only"])
        assert Cursor.decode("!!not base64!!") is None
        assert [j.prompt for j in gallery_page("garbage").jobs] == ["only"]

    def test_gallery_fragment_pushes_a_bookmarkable_url(self, client: FlaskClient) -> None:
        response = client.get("/gallery?q=fox&status=completed", headers=HX)
        assert response.headers["HX-Push-Url"] == "/?q=fox&status=completed"
        assert "No jobs match" in response.get_data(as_text=True)
        full = client.get("/gallery?q=fox")
        assert full.status_code == 302 and full.headers["Location"] == "/?q=fox"

    def test_queue_counts(self, client: FlaskClient) -> None:
        submit(client, "a")
        submit(client, "b")
        assert queue_counts() == {"waiting": 2, "running": 0}


@pytest.mark.parametrize("path", ["/", "/?q=x&status=failed", "/?status=bogus", "/?remix=nope"])
def test_pages_answer_html(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.mimetype == "text/html"
    assert response.status_code in (200, 404)


class TestJobPageExtras:
    def test_webhook_delivery_state_and_send_again(self, client: FlaskClient, app: Flask) -> None:
        from webapp import webhooks

        app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
        # Nothing listens on port 9: the delivery fails and is retried later.
        job = submit(client, "hooked", webhook_url="http://127.0.0.1:9/hook")
        run_queue()
        event_id = webhooks.event_id_for(job["id"])
        # Held across the attempt: the session must not keep describing it as "delivering"
        # (CI once saw that when the object outlived the attempt in a reference cycle).
        held = db.session.get(WebhookEvent, event_id)
        webhooks.deliver(event_id)
        assert held.status == "retrying" and held.attempt_count == 1
        html = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
        assert "http://127.0.0.1:9/hook" in html and event_id in html
        assert "badge-webhook-retrying" in html and "1 attempt" in html
        assert "Send again" not in html  # a retry waits: sending now would send it twice
        answer = post_form(client, f"/jobs/{job['id']}/webhooks/redeliver", {})
        assert answer.status_code == 200
        assert "badge-webhook-retrying" in answer.get_data(as_text=True)
        # Once it has failed for good, it can be sent again.
        app.config["WEBHOOK_RETRY_DELAYS"] = ""
        db.session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(next_attempt_at=now_utc())
        )
        db.session.commit()
        webhooks.deliver(event_id)
        html = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
        assert "badge-webhook-failed" in html and "Send again" in html
        answer = post_form(client, f"/jobs/{job['id']}/webhooks/redeliver", {})
        assert answer.status_code == 200
        assert "badge-webhook-pending" in answer.get_data(as_text=True)

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"width": 1024, "height": 576, "aspect_ratio": "16:9"}, "ratio-16-9"),
            ({"aspect_ratio": "custom", "width": 800, "height": 1000}, "ratio-4-5"),
            ({"aspect_ratio": "1:1", "resize_to": "1200x800"}, "ratio-3-2"),
            ({"aspect_ratio": "9:21"}, "ratio-9-21"),
            ({}, "ratio-1-1"),
        ],
    )
    def test_placeholder_ratio_follows_the_final_size(self, params: dict, expected: str) -> None:
        from webapp.pages.forms import ratio_class

        assert ratio_class(Job(provider_parameters=params)) == expected

    def test_form_booleans_become_json_booleans(self) -> None:
        from webapp.pages.forms import _convert

        assert _convert("true", "boolean") is True
        assert _convert("false", "boolean") is False
        assert _convert("maybe", "boolean") == "maybe"


def test_status_labels_and_filter_options_come_from_one_python_list(client: FlaskClient) -> None:
    """The filter's options are `FILTER_OPTIONS` in order, and every status has a label."""
    from webapp.models import JobStatus
    from webapp.pages.labels import FILTER_OPTIONS, STATUS_LABELS

    assert set(STATUS_LABELS) == set(JobStatus)
    page = client.get("/").get_data(as_text=True)
    select = page.split('<select id="status-filter"', 1)[1].split("</select>", 1)[0]
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)
    assert options == [("", "All"), *FILTER_OPTIONS.items()]
