"""Fuzzing: schemathesis checks the real app against its own `/api/v1/openapi.json`.

Every operation of the document is called in-process through WSGI (no server, no ports) with
requests generated from the document: its examples, coverage cases (boundaries and invalid
values) and random ones, a bounded and seeded number of each. Every answer must be no server
error and be documented: status, content type, headers and body. Schema-valid requests must
be accepted and invalid ones refused. Operations with a path id get random ids and the ids of
real jobs and media seeded first (finished, pending, cancelled, failed, expired); the explicit
tests send each real id to each such operation, plus the conditional and range requests of
media downloads and requests over a rate limit.

Every schemathesis check runs, and stateful sequences follow the document's links. Where a
check assumes what this API does not promise, a variant says why and checks the rest:
`CONFIG` (410 for expired media), `accepts_valid_jobs` and `rejects_invalid_jobs` (rules of a
job that JSON Schema cannot state), `accepts_valid_uploads` (any bytes fit the upload's
schema; only a picture is accepted) and `freed_resources_are_gone` (DELETE on a job cancels).
"""

from __future__ import annotations

import atexit
import io
import shutil
import socket
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import strategies as st
from PIL import Image
from schemathesis.openapi.checks import UseAfterFree
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    use_after_free,
)

from tests.helpers import TEST_CONFIG, run_queue
from webapp import attempts, create_app
from webapp.extensions import db, huey
from webapp.models import Media, now_utc
from webapp.validation import GenerationParameters

GENERATION = set(GenerationParameters.model_fields)
"""The guide's generation parameters; `parameters` may hold others, per model."""

pytestmark = pytest.mark.fuzz

API = "/api/v1"

# Bounded and reproducible: a fixed seed, no example database, at most `max-examples` random
# cases per operation besides the coverage cases. The file runs in well under a minute.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20240115,
        # Timing of data generation on a busy machine says nothing about the API.
        "suppress-health-check": ["too_slow"],
        "generation": {"max-examples": 40, "deterministic": True, "database": "none"},
        "checks": {
            "positive_data_acceptance": {
                # schemathesis's defaults plus 410: a media item past retention answers 410
                # Gone to any well-formed request, as an unknown one answers 404.
                "expected-statuses": [
                    *("2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx")
                ]
            }
        },
    }
)

# The app is built at import because schemathesis reads the document at collection (one test
# per operation). It has its own instance folder (database, media, rate-limit counters) with
# the settings of conftest's `app_config`.
_FOLDER = tempfile.mkdtemp(prefix="darkroom-fuzz-")
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
APP: Flask = create_app({**TEST_CONFIG, "INSTANCE_PATH": _FOLDER})
schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", APP, config=CONFIG)

REAL_IDS: dict[str, dict[str, str]] = {"job_id": {}, "media_id": {}, "upload_id": {}}
"""Seeded ids by path parameter, then by what they are (`done`, `pending`, `expired`, ...)."""
DELETABLE = {"spare", "spare2"}
"""Media seeded to be deleted; the others stay for the operations that read them."""


@schema.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    """Path ids: random ones (mostly 404s) or real ones, so found resources get checked too."""
    operation = context.operation
    names = [parameter.name for parameter in operation.path_parameters]
    deleting = operation.method.upper() == "DELETE"

    def real_ids() -> Any:
        # Deferred: the strategy is built at collection, the ids are seeded when tests run.
        choices = [
            {name: value}
            for name in names
            for kind, value in REAL_IDS.get(name, {}).items()
            if name == "job_id" or (kind in DELETABLE) == deleting
        ]
        return st.sampled_from(choices) if choices else st.nothing()

    return st.one_of(strategy, st.deferred(real_ids))


def _numeric_only(real: Any) -> Any:
    """`getaddrinfo` for IP literals only: webhook URLs never reach DNS from these tests."""

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    return getaddrinfo


@pytest.fixture(scope="module", autouse=True)
def seeded() -> Iterator[None]:
    """Real jobs and media in every state an id can be in; no DNS while the module runs."""
    huey.flush()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _numeric_only(socket.getaddrinfo))
        with APP.app_context():
            _seed(APP.test_client())
            db.session.remove()
        yield
    with APP.app_context():
        db.session.remove()
        db.engine.dispose()
    huey.flush()


def _seed(client: FlaskClient) -> None:
    def submit(**body: Any) -> str:
        answer = client.post(f"{API}/jobs/generate", json={"prompt": "a fox", **body})
        assert answer.status_code == 201, answer.get_json()
        return answer.get_json()["id"]

    def media_of(job_id: str) -> list[str]:
        return [m["id"] for m in client.get(f"{API}/jobs/status/{job_id}").get_json()["media"]]

    small = {"width": 128, "height": 128, "num_inference_steps": 1}
    done = submit(parameters={**small, "num_outputs": 2}, webhook_url="http://93.184.216.34/")
    old = submit(parameters={**small, "output_format": "jpg"})
    spares = submit(parameters={**small, "num_outputs": 2, "output_format": "webp"})
    assert run_queue() == 3
    huey.flush()  # the webhook delivery of `done`: never sent from here
    pending = submit()
    cancelled = submit()
    assert client.delete(f"{API}/jobs/{cancelled}").status_code == 204
    failed = submit()
    claim = attempts.claim_job(failed)
    assert claim is not None
    attempts.fail_attempt(claim, "Model not found", transient=False)
    huey.flush()
    png, png2 = media_of(done)
    (expired,) = media_of(old)
    spare, spare2 = media_of(spares)
    row = db.session.get(Media, expired)
    assert row is not None
    row.expires_at = now_utc() - timedelta(minutes=1)
    db.session.commit()
    REAL_IDS["job_id"].update(
        done=done, old=old, pending=pending, cancelled=cancelled, failed=failed
    )
    REAL_IDS["media_id"].update(png=png, png2=png2, expired=expired, spare=spare, spare2=spare2)

    def upload(size: tuple[int, int]) -> str:
        sent = {"file": (io.BytesIO(picture(size)), "picture.png")}
        answer = client.post(f"{API}/uploads", data=sent, content_type="multipart/form-data")
        assert answer.status_code == 201, answer.get_json()
        return answer.get_json()["id"]

    REAL_IDS["upload_id"].update(
        upload=upload((8, 8)), spare=upload((9, 9)), spare2=upload((10, 10))
    )


def picture(size: tuple[int, int]) -> bytes:
    """A small real PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, "PNG")
    return buffer.getvalue()


# -- explicit cases (they run first, while every seeded id is as seeded) --------------------


def _operations_with(parameter: str) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if any(p.name == parameter for p in op.path_parameters)]


def _cases(parameter: str, reads: list[str], deletes: list[str]) -> list[Any]:
    """(operation, seeded id) pairs; reads first, so each id is read before any DELETE."""
    pairs = []
    for operation in _operations_with(parameter):
        deleting = operation.method.upper() == "DELETE"
        pairs += [(operation, kind) for kind in (deletes if deleting else reads)]
    pairs.sort(key=lambda pair: (pair[0].method.upper() == "DELETE", pair[0].label))
    return [pytest.param(op, kind, id=f"{op.label} {kind}") for op, kind in pairs]


JOBS = ["done", "old", "pending", "cancelled", "failed"]


@pytest.mark.parametrize(("operation", "kind"), _cases("job_id", JOBS, JOBS))
def test_real_job_ids_answer_as_documented(operation: Any, kind: str) -> None:
    case = operation.Case(path_parameters={"job_id": REAL_IDS["job_id"][kind]})
    response = case.call_and_validate()
    assert response.status_code != 404, response.text


@pytest.mark.parametrize(
    ("operation", "kind"), _cases("media_id", ["png", "png2", "expired"], ["spare"])
)
def test_real_media_ids_answer_as_documented(operation: Any, kind: str) -> None:
    case = operation.Case(path_parameters={"media_id": REAL_IDS["media_id"][kind]})
    response = case.call_and_validate()
    expected = 410 if kind == "expired" else 204 if kind in DELETABLE else 200
    assert response.status_code == expected, response.text


@pytest.mark.parametrize(("operation", "kind"), _cases("upload_id", ["upload"], ["spare"]))
def test_real_upload_ids_answer_as_documented(operation: Any, kind: str) -> None:
    case = operation.Case(path_parameters={"upload_id": REAL_IDS["upload_id"][kind]})
    response = case.call_and_validate()
    assert response.status_code == (204 if kind in DELETABLE else 200), response.text


def test_a_real_upload_answers_as_documented() -> None:
    operation = schema[f"{API}/uploads"]["POST"]
    case = operation.Case(body={"file": picture((12, 7))}, media_type="multipart/form-data")
    response = case.call_and_validate()
    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (12, 7)


@pytest.mark.parametrize("suffix", ["", "/thumbnail"])
def test_conditional_and_range_downloads_answer_as_documented(suffix: str) -> None:
    operation = schema[f"{API}/media/{{media_id}}{suffix}"]["GET"]
    ids = {"media_id": REAL_IDS["media_id"]["png"]}
    full = operation.Case(path_parameters=ids).call_and_validate()
    assert full.status_code == 200
    headers = {name.lower(): values[0] for name, values in full.headers.items()}
    size = int(headers["content-length"])
    requests = [
        ({"If-None-Match": headers["etag"]}, 304),
        ({"If-Modified-Since": headers["last-modified"]}, 304),
        ({"Range": "bytes=0-9"}, 206),
        ({"Range": f"bytes={size - 5}-"}, 206),
        ({"Range": f"bytes={size + 10}-"}, 416),
        ({"Range": "bytes=0-9", "If-Range": '"stale"'}, 200),
        ({"If-Match": '"another"'}, 412),
    ]
    for sent, status in requests:
        answer = operation.Case(path_parameters=ids, headers=sent).call_and_validate()
        assert answer.status_code == status, (sent, answer.status_code)


@pytest.fixture
def limited_client(tmp_path: Path) -> Iterator[FlaskClient]:
    """An app whose limits a test reaches at once."""
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "RATE_LIMIT_CREATE": "1/minute",
            "RATE_LIMIT_STATUS": "1/minute",
        }
    )
    yield app.test_client()
    with app.app_context():
        db.engine.dispose()
    huey.flush()


def test_answers_over_the_rate_limit_are_documented(limited_client: FlaskClient) -> None:
    generate = schema[f"{API}/jobs/generate"]["POST"]
    status = schema[f"{API}/jobs/status/{{job_id}}"]["GET"]
    body = {"prompt": "a limited fox"}
    answers = [limited_client.post(f"{API}/jobs/generate", json=body) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [201, 429]
    for answer in answers:
        generate.Case(body=body, media_type="application/json").validate_response(answer)
    location, job_id = answers[0].headers["Location"], answers[0].get_json()["id"]
    answers = [limited_client.get(location) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [200, 429]
    for answer in answers:
        status.Case(path_parameters={"job_id": job_id}).validate_response(answer)


# -- generated cases ----------------------------------------------------------------------


def _is_semantic(error: dict[str, Any]) -> bool:
    """Whether a 422 error is one that no JSON Schema of the body could have predicted."""
    loc, kind = error["loc"], error["type"]
    return (
        # Which models this instance runs, where a webhook host resolves to (the SSRF guard),
        # and the size of `metadata` in bytes.
        kind in ("model_unknown", "url_not_allowed", "metadata_too_large")
        # Whether a picture parameter names an upload or media item that exists, or holds a
        # picture; and which pictures the chosen model takes.
        or (loc[2:3] in (["image"], ["mask"]) and kind in PICTURE_PROBLEMS)
        # Keys of `parameters` beyond the guide's: only the chosen model can judge them.
        or (loc[:2] == ["body", "parameters"] and loc[2:3] != [] and loc[2] not in GENERATION)
        # JSON Schema's integers include 5.0, but the API wants integers written as such.
        or (kind == "int_type" and isinstance(error["input"], float) and error["input"] % 1 == 0)
    )


NOT_A_PICTURE = frozenset({"file_empty", "image_type", "image_invalid", "image_too_large"})
PICTURE_PROBLEMS = NOT_A_PICTURE | {
    "input_invalid",
    "input_required",
    "input_not_found",
    "input_expired",
    "input_unsupported",
    "mask_without_image",
    "data_uri_invalid",
}


def accepts_valid_jobs(ctx: Any, response: Any, case: Any) -> bool | None:
    """`positive_data_acceptance` for job submission, minus what its schema cannot say.

    A schema-valid job must be accepted unless every error is one of `_is_semantic`; any
    other refusal of a schema-valid body fails, as in the built-in check.
    """
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if (
        positive
        and response.status_code == 422
        and all(map(_is_semantic, response.json()["detail"]))
    ):
        return None
    return positive_data_acceptance(ctx, response, case)


def accepts_valid_uploads(ctx: Any, response: Any, case: Any) -> bool | None:
    """`positive_data_acceptance` for uploads, where the schema says "bytes" and the API
    wants a picture: a 422 saying the bytes are no picture is right; anything else is judged
    as in the built-in check."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if (
        positive
        and response.status_code == 422
        and all(item["type"] in NOT_A_PICTURE for item in response.json()["detail"])
    ):
        return None
    return positive_data_acceptance(ctx, response, case)


# The document's JobCreate schema, to judge bodies the way a JSON Schema validator would.
_JOB_CREATE = jsonschema_rs.validator_for(
    {**schema.raw_schema, "$ref": "#/components/schemas/JobCreate"}
)


def _crlf_as_one(body: Any) -> Any:
    """The body with its texts' CRLF line breaks stored as LF, as the server stores them."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if isinstance(body.get("prompt"), str):
        body["prompt"] = body["prompt"].replace("\r\n", "\n")
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("negative_prompt"), str):
        negative = parameters["negative_prompt"].replace("\r\n", "\n")
        body["parameters"] = {**parameters, "negative_prompt": negative}
    return body


def rejects_invalid_jobs(ctx: Any, response: Any, case: Any) -> bool | None:
    """`negative_data_rejection` for job submission, with a CRLF counted as one character.

    The prompts' limits count a CRLF line break as one character (browsers send a textarea's
    line breaks as CRLF); `maxLength` counts two, and the schema's descriptions say so. A body
    that is valid once its CRLFs count as one is valid; any other accepted invalid body fails,
    as in the built-in check.
    """
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    if negative and response.status_code < 300 and _JOB_CREATE.is_valid(_crlf_as_one(case.body)):
        return None
    return negative_data_rejection(ctx, response, case)


def freed_resources_are_gone(ctx: Any, response: Any, case: Any) -> bool | None:
    """`use_after_free`, except after `DELETE /jobs/{job_id}`.

    In the API guide, DELETE on a job cancels it: the job stays, readable, with the status
    `cancelled`. DELETE on a media item does remove it, and stays checked.
    """
    try:
        return use_after_free(ctx, response, case)
    except UseAfterFree as failure:
        if failure.operation == f"DELETE {API}/jobs/{{job_id}}":
            return None
        raise


def _checks_for(case: Any) -> dict[str, Any]:
    """Every check; for job submission and uploads, the variants above in place of the
    built-in ones."""
    excluded, additional = [use_after_free], [freed_resources_are_gone]
    if case.operation.label == f"POST {API}/jobs/generate":
        excluded += [positive_data_acceptance, negative_data_rejection]
        additional += [accepts_valid_jobs, rejects_invalid_jobs]
    elif case.operation.label == f"POST {API}/uploads":
        excluded += [positive_data_acceptance]
        additional += [accepts_valid_uploads]
    return {"excluded_checks": excluded, "additional_checks": additional}


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(**_checks_for(case))


class Workflows(schema.as_state_machine()):  # type: ignore[misc]
    """Sequences of calls along the document's links: a created job's status, cancellation
    and webhooks, then its media; plus the stateful checks (a created job can be read, a
    deleted media item is gone)."""

    def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        case.validate_response(
            response, transport_kwargs=kwargs or None, recorder=self.recorder, **_checks_for(case)
        )


TestWorkflows = Workflows.TestCase
TestWorkflows.settings = hypothesis.settings(
    TestWorkflows.settings,
    max_examples=15,
    stateful_step_count=6,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
