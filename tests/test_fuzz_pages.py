"""Fuzzing the pages: no value read from a URL or a form makes a page route answer 5xx.

The OpenAPI routes are fuzzed by schemathesis (tests/test_fuzz.py); the pages have no such
document, so their routes are read from the app's URL map (a new page route is fuzzed without
being listed here) and called in-process with random path segments, query strings and form
fields, mixed with real job and media ids and with forged gallery cursors.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from tests.helpers import csrf_token, run_queue, submit
from webapp.gallery import Cursor, gallery_page

pytestmark = pytest.mark.fuzz

KNOWN_FIELDS = [
    *("q", "status", "cursor", "model", "remix", "seed", "id", "detail", "download", "view"),
    *("prompt", "negative_prompt", "width", "height", "num_outputs", "csrf_token"),
]


def cursor_token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Dates at and past the ends of the calendar, with offsets that push them further.
FORGED_CURSORS = st.builds(
    lambda date, offset, job: cursor_token(f"{date}{offset}|{job}"),
    st.sampled_from(
        ["9999-12-31T23:59:59", "0001-01-01T00:00:00", "2026-02-30T00:00:00", "2026-01-01"]
    ),
    st.sampled_from(["", "Z", "+14:00", "-14:00", "+23:59", "-23:59:59.999999"]),
    st.text(max_size=40),
)


def page_routes(app: Flask) -> list[tuple[str, str, list[str]]]:
    """(method, rule, path arguments) of every page route."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("pages."):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, rule.rule, sorted(rule.arguments)))
    return routes


@pytest.fixture
def known_ids(app: Flask) -> list[str]:
    """Ids of a real job (finished, with media) and of its media item."""
    client = app.test_client()
    job_id = submit(client, prompt="fuzzed pages", parameters={"num_inference_steps": 1})["id"]
    run_queue()
    media = client.get(f"/api/v1/jobs/status/{job_id}").get_json()["media"]
    return [job_id, media[0]["id"]]


def test_every_page_route_is_fuzzed(app: Flask) -> None:
    """The URL map holds the page routes this file expects to reach, with their arguments."""
    rules = {rule for _, rule, _ in page_routes(app)}
    assert {"/", "/gallery", "/poll", "/jobs", "/jobs/<job_id>", "/media/<media_id>"} <= rules
    assert len(rules) >= 10


def test_a_forged_cursor_means_from_the_start(app: Flask, client: FlaskClient) -> None:
    """A cursor with an out-of-range date (the offset pushes it past year 9999) is ignored."""
    forged = cursor_token("9999-12-31T23:59:59-14:00|x")
    assert Cursor.decode(forged) is None
    assert gallery_page(forged, "", "").next_cursor is None
    answer = client.get(f"/gallery?cursor={forged}", headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert client.get(f"/?cursor={forged}").status_code == 200


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_page_route_answers_a_server_error(
    app: Flask, known_ids: list[str], data: st.DataObject
) -> None:
    """Random paths, queries and forms on every page route: never a 5xx."""
    client = app.test_client()
    method, rule, arguments = data.draw(st.sampled_from(page_routes(app)), label="route")
    value = st.one_of(
        st.text(max_size=60),
        st.sampled_from(known_ids),
        FORGED_CURSORS,
        st.integers(-(2**70), 2**70).map(str),
    )
    path = rule
    for name in arguments:
        segment = data.draw(value.filter(lambda v: v not in ("", ".", "..")), label=name)
        path = path.replace(f"<{name}>", quote(segment, safe=""))
    fields = data.draw(
        st.lists(st.tuples(st.sampled_from(KNOWN_FIELDS) | st.text(max_size=10), value)),
        label="fields",
    )
    headers = {"HX-Request": "true"} if data.draw(st.booleans(), label="htmx") else {}
    if method == "GET":
        answer = client.get(path, query_string=MultiDict(fields), headers=headers)
    else:
        form = MultiDict([("csrf_token", csrf_token(client)), *fields])
        answer = client.post(path, data=form, headers=headers)
    assert answer.status_code < 500, (method, path, fields, answer.get_data(as_text=True)[:500])
