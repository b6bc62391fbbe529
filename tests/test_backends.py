"""The servers of self-hosted providers as the pages and /health show them, and their
setting: a server that does not answer is named in the model menu and on /health."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.procs import free_port
from webapp import create_app
from webapp.config import server_urls


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # Nothing listens there: the first look at the servers finds them down.
    dead = f"http://127.0.0.1:{free_port()}"
    return {**app_config, "A1111_URLS": f"http://user:secret@127.0.0.1:{free_port()},{dead}"}


def test_a_server_that_does_not_answer_is_named_in_the_model_menu(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert '<optgroup label="Down: their models are back when they answer">' in page
    assert page.count("AUTOMATIC1111 server 127.0.0.1:") == 2
    assert "secret" not in page, "credentials never show"


def test_health_lists_each_server_with_its_state(client: FlaskClient) -> None:
    client.get("/api/v1/models")  # the first look probes them
    body = client.get("/api/v1/health").get_json()
    assert [b["status"] for b in body["backends"]] == ["down", "down"]
    assert all(b["provider"] == "a1111" and b["last_error"] for b in body["backends"])
    assert all("secret" not in b["url"] and "user" not in b["url"] for b in body["backends"])
    assert all(b["retry_at"] for b in body["backends"])


def test_server_urls_keep_credentials_apart() -> None:
    assert server_urls(" http://u:p%40ss@gpu1:7860/ , https://[::1]:8188/base/") == [
        ("http://gpu1:7860", ("u", "p@ss")),
        ("https://[::1]:8188/base", None),
    ]


@pytest.mark.parametrize("value", ["gpu1:7860", "ftp://gpu1", "http://gpu1:99999"])
def test_a_setting_that_is_not_a_url_stops_the_start(
    app_config: dict[str, Any], value: str, tmp_path: Any
) -> None:
    with pytest.raises(RuntimeError, match="DARKROOM_COMFYUI_URLS"):
        create_app({**app_config, "COMFYUI_URLS": value})


def test_no_servers_no_backends(app: Flask, client: FlaskClient) -> None:
    app.config["A1111_URLS"] = ""
    app.extensions.pop("darkroom.backends", None)
    assert client.get("/api/v1/health").get_json()["backends"] == []
