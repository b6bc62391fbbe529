"""Health, models, the OpenAPI document, the docs page and HTML vs JSON error pages."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import __version__
from webapp.providers.base import ASPECT_RATIOS
from webapp.tasks import beat
from webapp.workers import worker_identity

API = "/api/v1"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
SERVICES = {"database", "queue", "storage", "worker"}


# -- health -----------------------------------------------------------------------------


def test_health_reports_every_service(app: Flask, client: FlaskClient) -> None:
    response = client.get(f"{API}/health")
    assert response.status_code == 200
    body = response.get_json()
    assert {"status", "version", "environment", "services", "timestamp"} <= set(body)
    assert set(body["services"]) == SERVICES
    assert all(isinstance(v, bool) for v in body["services"].values())
    assert body["services"]["database"] is True
    assert body["services"]["queue"] is True
    assert body["services"]["storage"] is True
    assert body["version"] == __version__
    assert body["environment"] == app.config["ENVIRONMENT"]
    assert ISO_Z.match(body["timestamp"])
    # No consumer has reported in: the API works, but nothing would run the jobs.
    assert body["services"]["worker"] is False
    assert body["status"] == "degraded"


def test_health_is_healthy_once_a_worker_reports_in(client: FlaskClient) -> None:
    beat(worker_identity())  # what a consumer process does at start and every 15 s
    body = client.get(f"{API}/health").get_json()
    assert body["services"] == {"database": True, "queue": True, "storage": True, "worker": True}
    assert body["status"] == "healthy"


def test_liveness(client: FlaskClient) -> None:
    response = client.get(f"{API}/health/live")
    assert response.status_code == 200
    assert response.get_json() == {"status": "alive"}


def test_readiness_when_all_is_well(client: FlaskClient) -> None:
    response = client.get(f"{API}/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["services"]["database"] and body["services"]["queue"]
    assert body["services"]["storage"]


def _break_by_chmod(root: Path) -> Iterator[None]:
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop root from writing")
    root.chmod(0o500)
    try:
        yield
    finally:
        root.chmod(0o700)


def _break_by_file(root: Path) -> Iterator[None]:
    """The media root path is a regular file (e.g. a mount that went missing and a stray file)."""
    aside = root.with_name(root.name + ".aside")
    root.rename(aside)
    root.write_bytes(b"not a directory")
    try:
        yield
    finally:
        root.unlink()
        aside.rename(root)


def _break_by_removal(root: Path) -> Iterator[None]:
    aside = root.with_name(root.name + ".aside")
    root.rename(aside)
    try:
        yield
    finally:
        if root.exists():
            shutil.rmtree(root)
        aside.rename(root)


@pytest.mark.parametrize("breakage", [_break_by_chmod, _break_by_file, _break_by_removal])
def test_readiness_fails_while_storage_is_unwritable(
    app: Flask, client: FlaskClient, breakage: Any
) -> None:
    root = Path(app.config["MEDIA_ROOT"])
    assert client.get(f"{API}/health/ready").status_code == 200
    broken = breakage(root)
    next(broken)
    try:
        ready = client.get(f"{API}/health/ready")
        assert ready.status_code == 503
        assert ready.is_json
        body = ready.get_json()
        assert body["status"] != "ready"
        assert body["services"]["storage"] is False
        assert body["services"]["database"] is True
        health = client.get(f"{API}/health")
        assert health.status_code == 503
        assert health.get_json()["status"] == "unhealthy"
        # Liveness is about the process, not its dependencies.
        assert client.get(f"{API}/health/live").status_code == 200
    finally:
        next(broken, None)
    assert root.is_dir()
    fixed = client.get(f"{API}/health/ready")
    assert fixed.status_code == 200
    assert fixed.get_json()["services"]["storage"] is True


# -- models -----------------------------------------------------------------------------


def test_models_lists_the_offline_demo(client: FlaskClient) -> None:
    response = client.get(f"{API}/models")
    assert response.status_code == 200
    body = response.get_json()
    assert body["default_model"] == "demo"
    by_id = {m["id"]: m for m in body["models"]}
    assert "demo" in by_id
    demo = by_id["demo"]
    assert demo["offline"] is True
    assert demo["default"] is True
    assert "offline" in demo["label"].lower()
    params = {p["name"]: p for p in demo["parameters"]}
    assert (params["width"]["minimum"], params["width"]["maximum"]) == (128, 2048)
    assert (params["height"]["minimum"], params["height"]["maximum"]) == (128, 2048)
    assert (params["num_inference_steps"]["minimum"], params["num_inference_steps"]["maximum"]) == (
        1,
        50,
    )
    assert (params["seed"]["minimum"], params["seed"]["maximum"]) == (0, 2_147_483_647)
    assert (params["output_quality"]["minimum"], params["output_quality"]["maximum"]) == (1, 100)
    assert (params["num_outputs"]["minimum"], params["num_outputs"]["maximum"]) == (1, 4)
    assert params["aspect_ratio"]["choices"] == list(ASPECT_RATIOS)
    assert params["output_format"]["choices"] == ["png", "jpg", "webp"]
    assert "guidance_scale" not in params and "negative_prompt" not in params
    # Every default sits inside its own bounds and choices.
    for p in params.values():
        if p.get("default") is None:
            continue
        if "choices" in p:
            assert p["default"] in p["choices"], p
        if "minimum" in p:
            assert p["minimum"] <= p["default"] <= p["maximum"], p


# -- OpenAPI ----------------------------------------------------------------------------

DOCUMENTED = {
    # path: {method: error statuses that must be documented}
    "/api/v1/jobs/generate": {"post": {"201", "400", "413", "422"}},
    "/api/v1/jobs/status/{job_id}": {"get": {"200", "404"}},
    "/api/v1/jobs": {"get": {"200", "422"}},
    "/api/v1/jobs/{job_id}": {"delete": {"204", "404", "409"}},
    "/api/v1/media/{media_id}": {"get": {"200", "404", "410"}, "delete": {"204", "404"}},
    "/api/v1/media/{media_id}/info": {"get": {"200", "404", "410"}},
    "/api/v1/media/{media_id}/thumbnail": {"get": {"200", "404", "410"}},
    "/api/v1/models": {"get": {"200"}},
    "/api/v1/health": {"get": {"200", "503"}},
    "/api/v1/health/live": {"get": {"200"}},
    "/api/v1/health/ready": {"get": {"200", "503"}},
}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    return response.get_json()


def test_openapi_version_and_info(spec: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])
    assert spec["info"]["title"]
    assert spec["info"]["version"]


@pytest.mark.parametrize("path", list(DOCUMENTED))
def test_openapi_documents_path_with_its_responses(spec: dict[str, Any], path: str) -> None:
    assert path in spec["paths"], sorted(spec["paths"])
    for method, statuses in DOCUMENTED[path].items():
        operation = spec["paths"][path].get(method)
        assert operation is not None, f"{method.upper()} {path} is not documented"
        assert statuses <= set(operation["responses"]), (method, sorted(operation["responses"]))
        for placeholder in re.findall(r"{(\w+)}", path):
            params = operation.get("parameters", []) + spec["paths"][path].get("parameters", [])
            assert any(p["name"] == placeholder and p["in"] == "path" for p in params)


def test_openapi_generate_body_is_job_create(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/v1/jobs/generate"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/JobCreate"}
    job_create = spec["components"]["schemas"]["JobCreate"]
    assert "prompt" in job_create["required"]
    assert {"prompt", "model", "parameters", "webhook_url", "metadata"} <= set(
        job_create["properties"]
    )
    assert job_create["properties"]["prompt"]["maxLength"] == 2000


def test_openapi_generate_422_is_the_validation_shape(spec: dict[str, Any]) -> None:
    answer = spec["paths"]["/api/v1/jobs/generate"]["post"]["responses"]["422"]
    ref = answer["content"]["application/json"]["schema"]["$ref"]
    schema = _resolve(spec, ref)
    assert {"detail", "request_id"} <= set(schema["properties"])


def _resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_has_no_dangling_references(spec: dict[str, Any]) -> None:
    refs = set(_refs(spec))
    assert "#/components/schemas/JobCreate" in refs
    for ref in refs:
        _resolve(spec, ref)


# -- docs page --------------------------------------------------------------------------


def test_docs_page_loads_swagger_ui_from_our_own_server(client: FlaskClient) -> None:
    response = client.get(f"{API}/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "swagger" in html.lower()
    assert "/api/v1/openapi.json" in html
    for host in ("unpkg", "jsdelivr", "cdnjs", "cloudflare", "googleapis", "cdn."):
        assert host not in html.lower()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        if "swagger" in asset:
            assert len(answer.data) > 1000, asset
        if asset.endswith(".js"):
            assert "javascript" in answer.mimetype
        elif asset.endswith(".css"):
            assert answer.mimetype == "text/css"


def test_docs_asset_path_cannot_escape(client: FlaskClient) -> None:
    response = client.get(f"{API}/docs/assets/..%2F..%2F__init__.py")
    assert response.status_code == 404


# -- HTML pages vs JSON errors ----------------------------------------------------------


def test_home_page_is_html(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("path", ["/no-such-page", "/jobs/nope/extra", "/apiv1/jobs"])
def test_unknown_page_is_an_html_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert not response.is_json
    text = response.get_data(as_text=True)
    assert text.lstrip().lower().startswith("<!doctype html")
    assert "404" in text


def test_wrong_method_on_a_page_is_html(client: FlaskClient) -> None:
    response = client.delete("/")
    assert response.status_code == 405
    assert response.mimetype == "text/html"


def test_unknown_api_path_is_json_not_html(client: FlaskClient) -> None:
    response = client.get(f"{API}/no-such-endpoint")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
