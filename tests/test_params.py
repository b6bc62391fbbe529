"""Validation of POST /api/v1/jobs/generate, through the real app and client.

The 422 shape (`type`, `loc`, `msg`, `input`) is the API guide's; every rejected request
must leave no job row and nothing in the queue.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.helpers import queued_job_ids, run_queue, submit
from webapp.providers.base import ASPECT_RATIOS

GENERATE = "/api/v1/jobs/generate"
MAX_SEED = 2_147_483_647
# Public IP literals: valid webhook targets that need no DNS (and pass an SSRF guard).
HOOK_HTTP = "http://93.184.215.14/webhooks/media-complete"
HOOK_HTTPS = "https://8.8.8.8:8443/hook"


def post_json(client: FlaskClient, body: Any) -> Any:
    return client.post(GENERATE, json=body)


def post_raw(client: FlaskClient, data: bytes | str, content_type: str = "application/json"):
    return client.post(GENERATE, data=data, content_type=content_type)


def body_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A valid request with one field (top level or under `parameters`) set to `value`."""
    body: dict[str, Any] = {"prompt": "a lighthouse in a storm"}
    if len(path) == 2:
        body["parameters"] = {path[1]: value}
    else:
        body[path[0]] = value
    return body


def assert_nothing_stored(client: FlaskClient) -> None:
    """No job row was written and no message was queued."""
    listing = client.get("/api/v1/jobs")
    assert listing.status_code == 200
    assert listing.get_json()["total"] == 0
    assert listing.get_json()["jobs"] == []
    assert queued_job_ids() == []


def single_error(response) -> dict[str, Any]:
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"detail", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert len(body["detail"]) == 1, body["detail"]
    error = body["detail"][0]
    assert set(error) == {"type", "loc", "msg", "input"}
    assert isinstance(error["msg"], str) and error["msg"]
    return error


# -- the guide's own example ----------------------------------------------------------


def test_guide_invalid_example_gives_exactly_the_guides_errors(client: FlaskClient) -> None:
    response = post_json(client, {"prompt": "", "parameters": {"width": -1, "height": 5000}})
    assert response.status_code == 422
    assert response.is_json
    body = response.get_json()
    assert body["detail"] == [
        {
            "type": "string_too_short",
            "loc": ["body", "prompt"],
            "msg": "String should have at least 1 character",
            "input": "",
        },
        {
            "type": "greater_equal",
            "loc": ["body", "parameters", "width"],
            "msg": "Input should be greater than or equal to 128",
            "input": -1,
        },
        {
            "type": "less_equal",
            "loc": ["body", "parameters", "height"],
            "msg": "Input should be less than or equal to 2048",
            "input": 5000,
        },
    ]
    assert isinstance(body["request_id"], str) and body["request_id"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert_nothing_stored(client)


# -- rejected fields ------------------------------------------------------------------

CONTROL = "string_control_character"
P = ("parameters",)

INVALID = [
    # prompt
    pytest.param(("prompt",), "", "string_too_short", id="prompt-empty"),
    pytest.param(("prompt",), "   \t\n ", "string_blank", id="prompt-whitespace"),
    pytest.param(("prompt",), "x" * 2001, "string_too_long", id="prompt-2001"),
    pytest.param(("prompt",), "a\x00b", CONTROL, id="prompt-nul"),
    pytest.param(("prompt",), "ding\x07", CONTROL, id="prompt-bel"),
    pytest.param(("prompt",), "\x1b[31mred", CONTROL, id="prompt-esc"),
    pytest.param(("prompt",), "one\rtwo", CONTROL, id="prompt-lone-cr"),
    pytest.param(("prompt",), "trailing cr\r", CONTROL, id="prompt-trailing-cr"),
    pytest.param(("prompt",), "cr cr lf\r\r\n", CONTROL, id="prompt-cr-before-crlf"),
    pytest.param(("prompt",), "next line\x85", CONTROL, id="prompt-c1-nel"),
    pytest.param(("prompt",), 42, "string_type", id="prompt-int"),
    pytest.param(("prompt",), None, "string_type", id="prompt-null"),
    pytest.param(("prompt",), ["a", "b"], "string_type", id="prompt-list"),
    pytest.param(("prompt",), True, "string_type", id="prompt-bool"),
    # width / height
    pytest.param((*P, "width"), 127, "greater_equal", id="width-127"),
    pytest.param((*P, "width"), 2049, "less_equal", id="width-2049"),
    pytest.param((*P, "width"), -1, "greater_equal", id="width-negative"),
    pytest.param((*P, "width"), "1024", "int_type", id="width-string"),
    pytest.param((*P, "width"), 1024.0, "int_type", id="width-float-integral"),
    pytest.param((*P, "width"), 512.5, "int_type", id="width-float"),
    pytest.param((*P, "width"), True, "int_type", id="width-true"),
    pytest.param((*P, "height"), 127, "greater_equal", id="height-127"),
    pytest.param((*P, "height"), 2049, "less_equal", id="height-2049"),
    pytest.param((*P, "height"), "768", "int_type", id="height-string"),
    pytest.param((*P, "height"), 768.0, "int_type", id="height-float"),
    pytest.param((*P, "height"), False, "int_type", id="height-false"),
    # num_inference_steps
    pytest.param((*P, "num_inference_steps"), 0, "greater_equal", id="steps-0"),
    pytest.param((*P, "num_inference_steps"), 501, "less_equal", id="steps-501"),
    pytest.param((*P, "num_inference_steps"), "4", "int_type", id="steps-string"),
    # guidance_scale
    pytest.param((*P, "guidance_scale"), -0.1, "greater_equal", id="guidance--0.1"),
    pytest.param((*P, "guidance_scale"), 50.1, "less_equal", id="guidance-50.1"),
    pytest.param((*P, "guidance_scale"), "NaN", "float_type", id="guidance-string-nan"),
    pytest.param((*P, "guidance_scale"), "7.5", "float_type", id="guidance-string"),
    pytest.param((*P, "guidance_scale"), True, "float_type", id="guidance-bool"),
    # negative_prompt
    pytest.param((*P, "negative_prompt"), "n" * 2001, "string_too_long", id="negative-2001"),
    pytest.param((*P, "negative_prompt"), "blur\x00", CONTROL, id="negative-nul"),
    pytest.param((*P, "negative_prompt"), 3, "string_type", id="negative-int"),
    # seed
    pytest.param((*P, "seed"), -1, "greater_equal", id="seed--1"),
    pytest.param((*P, "seed"), MAX_SEED + 1, "less_equal", id="seed-2147483648"),
    pytest.param((*P, "seed"), "42", "int_type", id="seed-string"),
    pytest.param((*P, "seed"), 4.2, "int_type", id="seed-float"),
    # output_quality
    pytest.param((*P, "output_quality"), 0, "greater_equal", id="quality-0"),
    pytest.param((*P, "output_quality"), 101, "less_equal", id="quality-101"),
    # aspect_ratio
    pytest.param((*P, "aspect_ratio"), "7:5", "literal_error", id="aspect-7:5"),
    pytest.param((*P, "aspect_ratio"), "", "literal_error", id="aspect-empty"),
    pytest.param((*P, "aspect_ratio"), "16x9", "literal_error", id="aspect-16x9"),
    # output_format
    pytest.param((*P, "output_format"), "gif", "literal_error", id="format-gif"),
    pytest.param((*P, "output_format"), "jpeg", "literal_error", id="format-jpeg"),
    pytest.param((*P, "output_format"), "PNG", "literal_error", id="format-PNG"),
    # num_outputs
    pytest.param((*P, "num_outputs"), 0, "greater_equal", id="outputs-0"),
    pytest.param((*P, "num_outputs"), 5, "less_equal", id="outputs-5"),
    # webhook_url
    pytest.param(("webhook_url",), "ftp://93.184.215.14/x", "url_scheme", id="hook-ftp"),
    pytest.param(("webhook_url",), "javascript:alert(1)", "url_scheme", id="hook-javascript"),
    pytest.param(("webhook_url",), "not a url", "url_scheme", id="hook-not-a-url"),
    pytest.param(("webhook_url",), "http://", "url_parsing", id="hook-no-host"),
    pytest.param(("webhook_url",), "http://93.184.215.14:99999/", "url_parsing", id="hook-port"),
    pytest.param(
        ("webhook_url",),
        HOOK_HTTP + "/" + "a" * (2049 - len(HOOK_HTTP) - 1),
        "string_too_long",
        id="hook-2049-chars",
    ),
    pytest.param(("webhook_url",), 7, "string_type", id="hook-int"),
    # metadata
    pytest.param(("metadata",), {"blob": "x" * 16 * 1024}, "metadata_too_large", id="meta-16k+"),
    pytest.param(("metadata",), ["user123"], "dict_type", id="meta-list"),
    pytest.param(("metadata",), "user123", "dict_type", id="meta-string"),
    # model
    pytest.param(("model",), 3, "string_type", id="model-int"),
    # parameters itself
    pytest.param(("parameters",), [], "model_type", id="parameters-list"),
    pytest.param(("parameters",), "width=1", "model_type", id="parameters-string"),
]


@pytest.mark.parametrize(("path", "value", "error_type"), INVALID)
def test_invalid_field_is_refused(
    client: FlaskClient, path: tuple[str, ...], value: Any, error_type: str
) -> None:
    error = single_error(post_json(client, body_with(path, value)))
    assert error["type"] == error_type
    assert error["loc"] == ["body", *path]
    assert error["input"] == value
    assert_nothing_stored(client)


def test_missing_prompt(client: FlaskClient) -> None:
    error = single_error(post_json(client, {"parameters": {"width": 512}}))
    assert error["type"] == "missing"
    assert error["loc"] == ["body", "prompt"]
    assert error["msg"] == "Field required"
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("NaN", "nan"),
        ("Infinity", "inf"),
        ("-Infinity", "-inf"),
    ],
)
def test_non_finite_guidance_scale_is_refused(client: FlaskClient, raw: str, shown: str) -> None:
    data = '{"prompt": "a cat", "parameters": {"guidance_scale": ' + raw + "}}"
    response = post_raw(client, data)
    error = single_error(response)
    assert error["type"] == "finite_number"
    assert error["loc"] == ["body", "parameters", "guidance_scale"]
    assert error["input"] == shown
    # The error itself is valid JSON (no bare NaN in the answer).
    json.loads(response.get_data(as_text=True), parse_constant=_no_constants)
    assert_nothing_stored(client)


def _no_constants(name: str) -> None:
    raise AssertionError(f"response contains the non-JSON constant {name}")


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_in_metadata_is_refused(client: FlaskClient, raw: str) -> None:
    """Metadata is echoed back in status answers and webhooks, which must stay valid JSON."""
    response = post_raw(client, '{"prompt": "a cat", "metadata": {"score": ' + raw + "}}")
    error = single_error(response)
    assert error["type"] == "finite_number"
    assert error["loc"] == ["body", "metadata"]
    json.loads(response.get_data(as_text=True), parse_constant=_no_constants)
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"prompt": "a", "priority": 1}, ["body", "priority"], id="top-level"),
        pytest.param({"prompt": "a", "Prompt": "b"}, ["body", "Prompt"], id="case-variant"),
        pytest.param(
            {"prompt": "a", "parameters": {"sampler": "euler"}},
            ["body", "parameters", "sampler"],
            id="parameters",
        ),
        pytest.param(
            {"prompt": "a", "parameters": {"num_steps": 4}},
            ["body", "parameters", "num_steps"],
            id="parameters-typo",
        ),
    ],
)
def test_unknown_keys_are_refused(client: FlaskClient, body: dict, loc: list[str]) -> None:
    error = single_error(post_json(client, body))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == loc
    assert_nothing_stored(client)


@pytest.mark.parametrize("model", ["no-such-model", "DEMO", "flux-schnell"])
def test_unknown_model_is_refused(client: FlaskClient, model: str) -> None:
    """flux-schnell is unknown here too: no Replicate token is configured in tests."""
    error = single_error(post_json(client, {"prompt": "a", "model": model}))
    assert error["type"] == "model_unknown"
    assert error["loc"] == ["body", "model"]
    assert error["input"] == model
    assert "demo" in error["msg"]
    assert_nothing_stored(client)


def test_several_errors_are_reported_together(client: FlaskClient) -> None:
    response = post_json(
        client,
        {
            "prompt": "ok",
            "parameters": {"seed": -5, "num_outputs": 9, "output_format": "gif"},
            "webhook_url": "ftp://x",
        },
    )
    assert response.status_code == 422
    locs = [e["loc"] for e in response.get_json()["detail"]]
    assert sorted(locs) == sorted(
        [
            ["body", "parameters", "seed"],
            ["body", "parameters", "output_format"],
            ["body", "parameters", "num_outputs"],
            ["body", "webhook_url"],
        ]
    )
    assert_nothing_stored(client)


# -- bodies that are not a JSON object ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "input_value"),
    [
        pytest.param("[]", [], id="empty-array"),
        pytest.param('[{"prompt": "a cat"}]', [{"prompt": "a cat"}], id="array-of-object"),
        pytest.param('"a cat"', "a cat", id="string"),
        pytest.param("null", None, id="null"),
        pytest.param("42", 42, id="number"),
    ],
)
def test_body_that_is_json_but_not_an_object_is_422(
    client: FlaskClient, raw: str, input_value: Any
) -> None:
    error = single_error(post_raw(client, raw))
    assert error["type"] == "model_type"
    assert error["loc"] == ["body"]
    assert error["input"] == input_value
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param("this is not json", "application/json", id="text"),
        pytest.param("", "application/json", id="empty"),
        pytest.param('{"prompt": "a cat", "parameters": {"width": 5', "application/json", id="cut"),
        pytest.param("{'prompt': 'single quotes'}", "application/json", id="single-quotes"),
        pytest.param('{"prompt": "a",}', "application/json", id="trailing-comma"),
        pytest.param(b"\xff\xfe\x00{", "application/json", id="binary"),
        pytest.param('{"prompt": "lone \\ud800 surrogate"}', "application/json", id="surrogate"),
        pytest.param(
            '{"prompt": "deep", "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5001,
            "application/json",
            id="too-deep",
        ),
    ],
)
def test_body_that_is_not_json_is_400(
    client: FlaskClient, data: str | bytes, content_type: str
) -> None:
    response = post_raw(client, data, content_type)
    assert response.status_code == 400
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"detail", "request_id"}
    assert isinstance(body["detail"], str) and "JSON" in body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"x" * (1024 * 1024 + 1), id="junk"),
        pytest.param(
            json.dumps({"prompt": "a", "metadata": {"blob": "y" * (1024 * 1024)}}), id="json"
        ),
    ],
)
def test_body_over_one_megabyte_is_413(client: FlaskClient, data: bytes | str) -> None:
    response = post_raw(client, data)
    assert response.status_code == 413
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"detail", "request_id"}
    assert isinstance(body["detail"], str) and body["detail"]
    assert_nothing_stored(client)


# -- accepted values ------------------------------------------------------------------

ACCEPTED = [
    pytest.param(("prompt",), "x" * 2000, id="prompt-2000"),
    pytest.param(("prompt",), "p", id="prompt-1"),
    pytest.param(("prompt",), "line one\nline two", id="prompt-newline"),
    pytest.param(("prompt",), "col\tcol", id="prompt-tab"),
    pytest.param(("prompt",), "ünïcödé 日本語 🦊", id="prompt-unicode"),
    pytest.param((*P, "width"), 128, id="width-128"),
    pytest.param((*P, "width"), 2048, id="width-2048"),
    pytest.param((*P, "height"), 128, id="height-128"),
    pytest.param((*P, "height"), 2048, id="height-2048"),
    pytest.param((*P, "num_inference_steps"), 1, id="steps-1"),
    pytest.param((*P, "num_inference_steps"), 500, id="steps-500"),
    pytest.param((*P, "guidance_scale"), 0, id="guidance-0"),
    pytest.param((*P, "guidance_scale"), 50, id="guidance-50"),
    pytest.param((*P, "guidance_scale"), 7.5, id="guidance-7.5"),
    pytest.param((*P, "negative_prompt"), "n" * 2000, id="negative-2000"),
    pytest.param((*P, "negative_prompt"), "", id="negative-empty"),
    pytest.param((*P, "seed"), 0, id="seed-0"),
    pytest.param((*P, "seed"), MAX_SEED, id="seed-max"),
    pytest.param((*P, "output_quality"), 1, id="quality-1"),
    pytest.param((*P, "output_quality"), 100, id="quality-100"),
    *[pytest.param((*P, "output_format"), f, id=f"format-{f}") for f in ("png", "jpg", "webp")],
    pytest.param((*P, "num_outputs"), 1, id="outputs-1"),
    pytest.param((*P, "num_outputs"), 4, id="outputs-4"),
    pytest.param(("webhook_url",), HOOK_HTTP, id="hook-http"),
    pytest.param(("webhook_url",), HOOK_HTTPS, id="hook-https"),
    pytest.param(
        ("webhook_url",), HOOK_HTTP + "/" + "a" * (2048 - len(HOOK_HTTP) - 1), id="hook-2048"
    ),
    pytest.param(("metadata",), {"user_id": "user123", "session_id": "sess456"}, id="meta-guide"),
    pytest.param(("metadata",), {"nested": {"list": [1, 2.5, None, True]}}, id="meta-nested"),
    pytest.param(("metadata",), {"blob": "z" * (15 * 1024)}, id="meta-15k"),
    pytest.param(("model",), "demo", id="model-demo"),
]


@pytest.mark.parametrize(("path", "value"), ACCEPTED)
def test_accepted_value_is_stored_as_requested(
    client: FlaskClient, path: tuple[str, ...], value: Any
) -> None:
    response = post_json(client, body_with(path, value))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    status = client.get(created["status_url"]).get_json()
    if len(path) == 2:
        assert status["parameters"][path[1]] == value
    elif path == ("metadata",):
        assert status["metadata"] == value
    elif path == ("model",):
        assert status["model"] == value
    else:
        assert status[path[0]] == value


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_every_aspect_ratio_is_accepted_and_sizes_the_picture(
    client: FlaskClient, ratio: str
) -> None:
    created = submit(client, parameters={"aspect_ratio": ratio})
    job = client.get(created["status_url"]).get_json()
    assert job["parameters"]["aspect_ratio"] == ratio
    assert "width" not in job["parameters"] and "height" not in job["parameters"]
    used = job["provider_parameters"]
    w, h = (int(x) for x in ratio.split(":"))
    assert used["aspect_ratio"] == ratio
    assert abs(used["width"] / used["height"] - w / h) < 0.02
    assert max(used["width"], used["height"]) == 1024  # the demo model's base size
    assert used["width"] % 8 == 0 and used["height"] % 8 == 0
    assert min(used["width"], used["height"]) >= 128


def test_aspect_ratio_16_9_renders_that_size(client: FlaskClient) -> None:
    created = submit(client, parameters={"aspect_ratio": "16:9", "num_inference_steps": 1})
    job = client.get(created["status_url"]).get_json()
    assert (job["provider_parameters"]["width"], job["provider_parameters"]["height"]) == (
        1024,
        576,
    )
    assert job["warnings"] == []
    assert run_queue() == 1
    done = client.get(created["status_url"]).get_json()
    assert done["status"] == "completed"
    assert [(m["width"], m["height"]) for m in done["media"]] == [(1024, 576)]


# -- what the server adds: seed, warnings, clamping -----------------------------------


def test_request_without_seed_gets_one_recorded(client: FlaskClient) -> None:
    created = submit(client, parameters={"width": 256, "height": 256})
    job = client.get(created["status_url"]).get_json()
    seed = job["parameters"]["seed"]
    assert isinstance(seed, int) and not isinstance(seed, bool)
    assert 0 <= seed <= MAX_SEED
    assert job["provider_parameters"]["seed"] == seed
    assert job["warnings"] == []


def test_request_without_parameters_gets_a_seed_too(client: FlaskClient) -> None:
    created = submit(client)
    job = client.get(created["status_url"]).get_json()
    assert set(job["parameters"]) == {"seed"}
    assert 0 <= job["parameters"]["seed"] <= MAX_SEED


def test_given_seed_is_kept(client: FlaskClient) -> None:
    created = submit(client, parameters={"seed": 12345})
    job = client.get(created["status_url"]).get_json()
    assert job["parameters"]["seed"] == 12345
    assert job["provider_parameters"]["seed"] == 12345


@pytest.mark.parametrize(
    ("parameters", "ignored"),
    [
        ({"guidance_scale": 7.5}, ["guidance_scale"]),
        ({"negative_prompt": "blurry, low quality"}, ["negative_prompt"]),
        (
            {"guidance_scale": 7.5, "negative_prompt": "blurry", "width": 1024, "height": 1024},
            ["guidance_scale", "negative_prompt"],
        ),
    ],
)
def test_unsupported_parameters_produce_warnings(
    client: FlaskClient, parameters: dict, ignored: list[str]
) -> None:
    created = submit(client, parameters=parameters)
    job = client.get(created["status_url"]).get_json()
    assert len(job["warnings"]) == len(ignored)
    for name in ignored:
        assert any(name in w and "demo" in w for w in job["warnings"]), job["warnings"]
        assert name not in job["provider_parameters"]
        assert job["parameters"][name] == parameters[name]  # recorded as requested
    assert created["warnings"] == job["warnings"]


def test_steps_beyond_model_maximum_are_clamped_with_a_warning(client: FlaskClient) -> None:
    created = submit(client, parameters={"num_inference_steps": 200})
    job = client.get(created["status_url"]).get_json()
    assert job["parameters"]["num_inference_steps"] == 200
    assert job["provider_parameters"]["num_inference_steps"] == 50
    assert len(job["warnings"]) == 1
    assert "num_inference_steps" in job["warnings"][0]
    assert "50" in job["warnings"][0]


def test_steps_within_model_range_are_not_clamped(client: FlaskClient) -> None:
    created = submit(client, parameters={"num_inference_steps": 50})
    job = client.get(created["status_url"]).get_json()
    assert job["provider_parameters"]["num_inference_steps"] == 50
    assert job["warnings"] == []


def test_valid_request_is_queued_once(client: FlaskClient) -> None:
    created = submit(client)
    assert queued_job_ids() == [created["id"]]
    assert client.get("/api/v1/jobs").get_json()["total"] == 1


def test_crlf_line_breaks_are_stored_as_newlines(client: FlaskClient) -> None:
    """Browsers send a textarea's line breaks as CRLF; the job keeps plain newlines."""
    body = {"prompt": "textarea line\r\nnext line", "parameters": {"negative_prompt": "a\r\nb"}}
    created = client.post("/api/v1/jobs/generate", json=body)
    assert created.status_code == 201
    status = client.get(created.get_json()["status_url"]).get_json()
    assert status["prompt"] == "textarea line\nnext line"
    assert status["parameters"]["negative_prompt"] == "a\nb"
