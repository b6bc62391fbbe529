"""The create form in the browser: submitting, live progress, one poll for every running
card, Cancel on a card, and the Advanced fields.

The stack, Chromium and the watch on every page: tests/browser.py.
"""

from __future__ import annotations

import itertools
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser import (
    CARDS,
    COUNTER,
    SLOW,
    SMALL,
    Pages,
    assert_polling_stopped,
    card_state,
    check_images,
    counter,
    fill_form,
    new_card_id,
    page_clock,
    polls,
    wait_idle,
    wait_images_loaded,
)
from tests.procs import API, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def assert_poll_rate(made: list[tuple[float, str]], since: float, until: float) -> None:
    """About one poll a second at most: never two within 0.9 s, at most 1.5 a second."""
    seconds = (until - since) / 1000
    assert len(made) / seconds <= 1.5, f"{len(made)} polls in {seconds:.1f}s"
    gaps = [(b - a) / 1000 for (a, _), (b, _) in itertools.pairwise(made)]
    assert min(gaps, default=1.0) >= 0.9, gaps


def test_submit_shows_card_at_once_then_progress_then_image(
    page: Page, pages: Pages, stack: Stack
) -> None:
    """No reload: the card is on top at once, its bar advances, then the thumbnail arrives."""
    wait_idle(stack)
    page.goto("/")
    page.evaluate("window.__sameDocument = 'yes'")
    prompt = "A beautiful sunset over mountains"
    # About 6 s of work: a poll a second sees the bar at several points along the way.
    fill_form(page, prompt, aspect_ratio="16:9", num_inference_steps=40)
    clicked = time.monotonic()
    clicked_ms = page_clock(page)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, prompt, timeout=1500)
    assert time.monotonic() - clicked < 1.5
    first = card_state(page, job_id)
    assert first["status"] in ("pending", "processing"), first
    assert first["cancel"], "a running card offers Cancel"

    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while True:
        state = card_state(page, job_id)
        seen.append(state)
        if state["image"] or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    done_ms = page_clock(page)
    assert seen[-1]["image"], f"no thumbnail: {seen[-5:]}"

    progress = [s["progress"] for s in seen if s["progress"] is not None]
    assert progress == sorted(progress), f"the bar went backwards: {progress}"
    assert len({p for p in progress if 0 < p < 100}) >= 2, f"the bar did not advance: {progress}"
    assert "processing" in {s["status"] for s in seen}
    assert any(COUNTER.search(s["counter"])[2] != "0" for s in seen), "counter never ran"

    final = card_state(page, job_id)
    assert final["status"] == "completed" and final["progress"] is None and not final["cancel"]
    card = page.locator(f"#card-{job_id}")
    expect(card).to_have_attribute("aria-busy", "false")
    image = card.locator("img.card-img")
    expect(image).to_have_attribute("alt", prompt)
    expect(image).to_have_attribute("loading", "lazy")
    assert page.locator(CARDS).first.get_attribute("id") == f"card-{job_id}"
    assert counter(page) == (0, 0)

    made = polls(page, clicked_ms, done_ms)
    assert len(made) >= 2, made
    assert_poll_rate(made, clicked_ms, done_ms)
    assert_polling_stopped(page)

    assert page.evaluate("window.__sameDocument") == "yes", "the page reloaded"
    assert len(pages.watch(page).visited) == 1, pages.watch(page).visited
    status = stack.status(job_id)
    assert status["status"] == "completed"
    assert status["provider_parameters"]["aspect_ratio"] == "16:9"
    assert status["provider_parameters"]["num_inference_steps"] == 40
    check_images(page)


def test_ctrl_enter_and_cmd_enter_submit(page: Page, stack: Stack) -> None:
    """Ctrl+Enter (and Cmd+Enter) in the prompt submit the form."""
    page.goto("/")
    ids = []
    for key, prompt in (
        ("Control+Enter", "keyboard maple one"),
        ("Meta+Enter", "keyboard maple two"),
    ):
        fill_form(page, prompt, **SMALL)
        page.locator("textarea[name=prompt]").press(key)
        ids.append(new_card_id(page, prompt))
        expect(page.locator("textarea[name=prompt]")).to_be_focused()
    assert len(set(ids)) == 2
    stack.wait_terminal(ids)
    for job_id in ids:
        expect(page.locator(f"#card-{job_id} img.card-img")).to_be_visible(timeout=5000)


def test_one_poll_refreshes_every_running_card_then_stops(page: Page, stack: Stack) -> None:
    """Three running cards, one request a second for all of them, none once they end."""
    wait_idle(stack)
    # About 3 s each, two at a time: all three still run when the page loads and first polls,
    # however slowly a busy machine serves it.
    parameters = {**SMALL, "num_inference_steps": 20}
    ids = [stack.submit(f"tidepool lantern {n}", parameters=parameters)["id"] for n in range(3)]
    page.goto("/")
    waiting, running = counter(page)
    assert waiting + running == 3, (waiting, running)
    for job_id in ids:
        assert card_state(page, job_id)["status"] in ("pending", "processing")
    page.wait_for_function(
        "ids => ids.every(id => document.querySelector('#card-' + id + ' img.card-img'))",
        arg=ids,
        timeout=20_000,
    )
    done_ms = page_clock(page)
    made = polls(page)
    assert made, "nothing polled"
    first = parse_qs(urlsplit(made[0][1]).query)
    assert sorted(first["id"]) == sorted(ids), "one poll carries every running card"
    assert_poll_rate(made, 0, done_ms)
    expect(page.locator("#queue-counter")).to_contain_text("0 waiting · 0 running")
    assert_polling_stopped(page, seconds=1.2)
    wait_images_loaded(page, ", ".join(f"#card-{job_id} img" for job_id in ids))
    check_images(page)


def test_cancel_from_a_card(page: Page, stack: Stack) -> None:
    """A running card's Cancel button cancels the job, and the card says so."""
    page.goto("/")
    fill_form(page, "a slow glacier to cancel", **SLOW)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, "a slow glacier to cancel")
    card = page.locator(f"#card-{job_id}")
    expect(card.locator(".badge").first).to_have_text("processing", timeout=5000)
    card.get_by_role("button", name="Cancel").click()
    expect(card.locator(".badge").first).to_have_text("cancelled")
    expect(card.locator(".card-link")).to_be_focused()
    expect(card.locator(".placeholder-label")).to_have_text("Cancelled")
    expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    assert stack.status(job_id)["status"] == "cancelled"
    assert_polling_stopped(page, seconds=1.2)
    assert stack.status(job_id)["status"] == "cancelled", "a late result flipped it back"


def test_advanced_fields_come_from_the_model_definition(
    page: Page, pages: Pages, stack: Stack
) -> None:
    """Model picker and Advanced fields mirror /api/v1/models; out-of-range input is refused."""
    registry = stack.get(f"{API}/models").json()
    page.goto("/")
    options = page.locator("#model option")
    assert options.evaluate_all("os => os.map(o => o.value)") == [
        m["id"] for m in registry["models"]
    ]
    expect(page.locator("#model option[value=demo]")).to_contain_text("offline demo model")
    expect(page.locator("details.advanced")).not_to_have_attribute("open", "")
    page.locator("details.advanced > summary").click()

    demo = next(m for m in registry["models"] if m["id"] == "demo")
    names = {p["name"] for p in demo["parameters"]}
    assert {
        "seed",
        "num_inference_steps",
        "output_quality",
        "output_format",
        "num_outputs",
    } <= names
    for param in demo["parameters"]:
        field = page.locator(f"#create-form [name={param['name']}]")
        expect(field).to_have_count(1)
        expect(field).to_be_visible()
        if param.get("choices"):
            values = field.locator("option").evaluate_all("os => os.map(o => o.value)")
            assert [v for v in values if v] == param["choices"], param
        else:
            expect(field).to_have_attribute("type", "number")
            assert float(field.get_attribute("min")) == param["minimum"], param
            assert float(field.get_attribute("max")) == param["maximum"], param

    # The browser's own checks are off (novalidate): the server's message is the one shown.
    pages.watch(page).expect_console(r"status of 422")
    before = page.locator(CARDS).count()
    fill_form(page, "a lighthouse with too many steps", num_inference_steps=999)
    page.get_by_role("button", name="Generate").click()
    error = page.locator("#create-form .field.invalid .error-text")
    expect(error).to_have_text("Input should be less than or equal to 500")
    expect(page.locator("#f-num_inference_steps")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("details.advanced")).to_have_attribute("open", "")
    expect(page.locator("textarea[name=prompt]")).to_have_value("a lighthouse with too many steps")
    assert page.locator(CARDS).count() == before

    fill_form(page, "   ", num_inference_steps="")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#prompt-error")).to_have_text("String should not be blank")
    assert page.locator(CARDS).count() == before
