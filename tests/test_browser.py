"""The pages in a real browser: Debian's headless Chromium against gunicorn + huey_consumer.

Tests share one stack (module scope) and run in file order: the first needs the empty
gallery, the second fills it with the showcase the docs' screenshots are taken of. Every
page is watched (tests/browser.py): a console error or warning, an uncaught exception, a
CSP violation or an unexpected dialog fails the test that opened the page.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests import make_screenshots
from tests.browser import (
    DESKTOP,
    PHONE,
    SMALL,
    Held,
    Pages,
    browser_fixture,  # noqa: F401 - a fixture, used by name
    check_images,
    no_horizontal_scroll,
    page_clock,
    page_fixture,  # noqa: F401 - a fixture, used by name
    pages_fixture,  # noqa: F401 - a fixture, used by name
    polls,
    seed_jobs,
    stack_fixture,  # noqa: F401 - a fixture, used by name
    wait_htmx_ready,
    wait_idle,
    wait_images_loaded,
)
from tests.procs import API, Stack

pytestmark = pytest.mark.e2e

CARDS = "#gallery > .card"
COUNTER = re.compile(r"(\d+) waiting · (\d+) running")


# -- helpers ------------------------------------------------------------------------------


def fill_form(page: Page, prompt: str, aspect_ratio: str | None = None, **advanced: Any) -> None:
    """Type a prompt and set fields of the create form (opening Advanced when needed)."""
    page.locator("textarea[name=prompt]").fill(prompt)
    if aspect_ratio:
        page.locator("select[name=aspect_ratio]").select_option(aspect_ratio)
    if advanced and page.locator("details.advanced[open]").count() == 0:
        page.locator("details.advanced > summary").click()
    for name, value in advanced.items():
        field = page.locator(f"#create-form [name={name}]")
        if field.evaluate("el => el.tagName") == "SELECT":
            field.select_option(str(value))
        else:
            field.fill(str(value))


def new_card_id(page: Page, prompt: str, timeout: float = 2000) -> str:
    """The id of the card at the top of the gallery, once it shows `prompt`."""
    first = page.locator(CARDS).first
    expect(first.locator(".card-prompt")).to_have_text(prompt, timeout=timeout)
    return (first.get_attribute("id") or "").removeprefix("card-")


def card_state(page: Page, job_id: str) -> dict[str, Any]:
    """What a card shows right now."""
    return page.evaluate(
        """id => {
            const card = document.getElementById("card-" + id);
            if (!card) return null;
            const bar = card.querySelector("progress");
            const img = card.querySelector("img.card-img");
            return {
                status: card.querySelector(".badge").textContent.trim(),
                progress: bar ? bar.value : null,
                image: img ? img.complete && img.naturalWidth > 0 : false,
                cancel: !!card.querySelector("form.card-actions button"),
                counter: document.getElementById("queue-counter").textContent,
            };
        }""",
        job_id,
    )


def counter(page: Page) -> tuple[int, int]:
    """The queue counter's (waiting, running)."""
    text = page.locator("#queue-counter").inner_text()
    match = COUNTER.search(text)
    assert match, text
    return int(match[1]), int(match[2])


def assert_polling_stopped(page: Page, seconds: float = 3.0) -> None:
    """No request to /poll for `seconds` once nothing on the page runs."""
    expect(page.locator("#poller")).to_have_attribute("data-active", "false")
    assert page.locator("#poller").get_attribute("hx-get") is None
    quiet_from = page_clock(page)
    page.wait_for_timeout(seconds * 1000)
    left = polls(page, since=quiet_from)
    assert left == [], f"polling went on after every job ended: {left}"


def assert_poll_rate(made: list[tuple[float, str]], since: float, until: float) -> None:
    """About one poll a second at most: never two within 0.9 s, at most 1.5 a second."""
    seconds = (until - since) / 1000
    assert len(made) / seconds <= 1.5, f"{len(made)} polls in {seconds:.1f}s"
    gaps = [(b - a) / 1000 for (a, _), (b, _) in itertools.pairwise(made)]
    assert min(gaps, default=1.0) >= 0.9, gaps


def params_shown(page: Page) -> dict[str, str]:
    """The job page's first parameter list, as text."""
    return page.eval_on_selector_all(
        "dl.params >> nth=0 >> div",
        "divs => Object.fromEntries(divs.map(d => [d.querySelector('dt').textContent.trim(),"
        " d.querySelector('dd').textContent.trim()]))",
    )


def finished_job(stack: Stack, prompt: str, **parameters: Any) -> dict[str, Any]:
    """Submit one job through the API and return its status once it has ended."""
    job_id = stack.submit(prompt, parameters=parameters)["id"]
    return stack.wait_terminal([job_id], timeout=30)[job_id]


@contextlib.contextmanager
def framing_site(target: str) -> Iterator[str]:
    """Another site on loopback whose page frames one of its own pages and `target`."""
    pages = {
        "/": f'<link rel="icon" href="data:,"><iframe src="/own"></iframe>'
        f'<iframe src="{target}"></iframe>'.encode(),
        "/own": b'<p id="framed">framed</p>',
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def city(stack: Stack) -> dict[str, Any]:
    """A completed 16:9 job with a fixed seed and a parameter the demo model ignores."""
    body = finished_job(
        stack,
        "A futuristic cityscape at night",
        seed=4242,
        aspect_ratio="16:9",
        num_inference_steps=2,
        guidance_scale=7.5,
    )
    assert body["status"] == "completed", body
    return body


# -- the create form, live progress, polling ----------------------------------------------


def test_empty_gallery_says_what_to_do(page: Page, stack: Stack) -> None:
    """A fresh install shows how to make the first picture (this test must run first)."""
    assert stack.get(f"{API}/jobs").json()["total"] == 0, "the stack is not fresh"
    page.goto("/")
    empty = page.locator("#gallery-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("Nothing here yet")
    expect(empty).to_contain_text("Type a prompt above and press Generate")
    expect(page.locator(CARDS)).to_have_count(0)
    assert counter(page) == (0, 0)
    expect(page.locator("#poller")).to_have_attribute("data-active", "false")


def test_screenshots_of_the_main_pages(pages: Pages, stack: Stack, tmp_path: Path) -> None:
    """The docs' screenshots, from a gallery holding only the showcase (so: runs second).

    They go to a scratch folder, so a test run never changes tracked files;
    `make screenshots` writes docs/screenshots/ the same way.
    """
    assert stack.get(f"{API}/jobs").json()["total"] == 0, "the gallery is not empty"
    written = make_screenshots.capture(stack, pages.new, out_dir=tmp_path)
    sizes = {path.name: Image.open(path).size for path in written}
    for name, size in sizes.items():
        width = PHONE["width"] if "phone" in name else DESKTOP["width"]
        assert size[0] == width, (name, size)
    assert {
        "gallery-desktop.png",
        "gallery-phone.png",
        "job-desktop.png",
        "job-phone.png",
        "gallery-dark.png",
    } <= set(sizes)


def test_watch_reports_csp_violations(pages: Pages) -> None:
    """The page watcher sees a CSP violation (so the zero counts elsewhere mean something)."""
    page = pages.new()
    watch = pages.watch(page)
    # Chromium also logs the refusal to the console; that line is provoked on purpose here.
    watch.expect_console(r"violates the following Content Security Policy directive")
    page.goto("/")
    page.evaluate("document.body.setAttribute('style', 'color: red')")  # inline style: refused
    page.wait_for_function("() => window.__csp.length > 0")  # a function: an expression needs eval
    page.wait_for_timeout(100)
    assert [v["directive"] for v in watch.csp] == ["style-src-attr"]
    assert watch.expected_seen, "the console did not report the refusal"
    assert page.evaluate("getComputedStyle(document.body).color") != "rgb(255, 0, 0)"
    watch.csp.clear()  # provoked on purpose: the page is otherwise clean
    page.evaluate("window.__csp = []")


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
    ids = [
        stack.submit(f"tidepool lantern {n}", parameters={**SMALL, "num_inference_steps": 8})["id"]
        for n in range(3)
    ]
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
    fill_form(page, "a slow glacier to cancel", **{**SMALL, "num_inference_steps": 50})
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


# -- the job page --------------------------------------------------------------------------


def test_job_page_shows_everything(pages: Pages, stack: Stack, city: dict[str, Any]) -> None:
    """From the gallery to the job page: image, prompt, model, parameters, timings, actions."""
    page = pages.new(permissions=["clipboard-read", "clipboard-write"])
    job_id = city["id"]
    media = city["media"][0]
    page.goto("/")
    thumb = page.locator(f"#card-{job_id} img.card-img")
    assert "512w" in (thumb.get_attribute("srcset") or ""), "a large picture offers a srcset"
    page.locator(f"#card-{job_id} a.card-link").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}$"))
    expect(page).to_have_title(re.compile(r"^A futuristic cityscape at night · Darkroom$"))

    expect(page.locator("h1.detail-prompt")).to_have_text(city["prompt"])
    expect(page.locator(".detail-info .card-meta")).to_contain_text("demo")
    expect(page.locator(".detail-info .badge")).to_have_text("completed")
    image = page.locator(".detail-figure img")
    expect(image).to_have_count(1)
    wait_images_loaded(page)
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [
        media["width"],
        media["height"],
    ]
    assert urlsplit(image.get_attribute("src") or "").path == f"/media/{media['id']}"
    expect(image).to_have_attribute("alt", city["prompt"])

    shown = params_shown(page)
    for key, value in city["provider_parameters"].items():
        assert shown[key.replace("_", " ")] == str(value), (key, shown)
    assert shown["seed"] == "4242"
    warnings = page.locator(".warnings li")
    assert warnings.all_inner_texts() == city["warnings"] and city["warnings"]
    expect(warnings.first).to_contain_text("guidance_scale")
    timing = page.eval_on_selector_all(
        "dl.params >> nth=1 >> div",
        "divs => Object.fromEntries(divs.map(d => [d.querySelector('dt').textContent.trim(),"
        " d.querySelector('dd').textContent.trim()]))",
    )
    assert timing["created"] == city["created_at"] and timing["finished"] == city["completed_at"]
    assert timing["duration"].endswith(" s") and timing["job id"] == job_id
    expect(page.locator(".alert")).to_have_count(0)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename.endswith(".png")
    saved = Path(download.value.path())
    assert saved.stat().st_size == media["file_size_bytes"]
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    # Copy as curl, then run what was copied: it submits the same job.
    page.get_by_role("button", name="Copy as curl").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator(f"#curl-{job_id}").inner_text()
    assert f"{stack.base_url}/api/v1/jobs/generate" in copied
    result = subprocess.run(
        ["bash", "-c", copied + " --silent --show-error --fail"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    again = stack.wait_terminal([re.search(r'"id": ?"([^"]+)"', result.stdout)[1]])
    (replayed,) = again.values()
    assert replayed["prompt"] == city["prompt"]
    assert replayed["provider_parameters"] == city["provider_parameters"]
    check_images(page)


def test_remix_prefills_the_form(page: Page, stack: Stack, city: dict[str, Any]) -> None:
    """Remix opens the create form filled with the job's prompt and settings."""
    page.goto(f"/jobs/{city['id']}")
    page.get_by_role("link", name="Remix").click()
    expect(page).to_have_url(re.compile(rf"/\?remix={city['id']}$"))
    expect(page.locator("textarea[name=prompt]")).to_have_value(city["prompt"])
    expect(page.locator("select[name=aspect_ratio]")).to_have_value("16:9")
    expect(page.locator("details.advanced")).to_have_attribute("open", "")
    expect(page.locator("#f-seed")).to_have_value("4242")
    expect(page.locator("#f-num_inference_steps")).to_have_value("2")

    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, city["prompt"])
    assert job_id != city["id"]
    body = stack.wait_terminal([job_id])[job_id]
    assert body["provider_parameters"]["seed"] == 4242
    assert body["provider_parameters"]["aspect_ratio"] == "16:9"
    expect(page.locator(f"#card-{job_id} img.card-img")).to_be_visible(timeout=5000)


def test_vary_seed_opens_the_new_job_which_fills_in_live(
    page: Page, stack: Stack, city: dict[str, Any]
) -> None:
    """Vary seed submits the same settings with a new seed and opens that job's page."""
    page.goto(f"/jobs/{city['id']}")
    page.get_by_role("button", name="Vary seed").click()
    page.wait_for_url(re.compile(r"/jobs/(?!" + city["id"] + r")[0-9a-f-]{36}$"))
    new_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__sameDocument = 'yes'")
    expect(page.locator("h1.detail-prompt")).to_have_text(city["prompt"])
    # The page's poll turns the placeholder into the picture without a reload.
    expect(page.locator(".detail-figure img")).to_be_visible(timeout=10_000)
    expect(page.locator(".detail-info .badge")).to_have_text("completed")
    assert page.evaluate("window.__sameDocument") == "yes"
    body = stack.status(new_id)
    assert body["provider_parameters"]["seed"] != 4242
    assert params_shown(page)["seed"] == str(body["provider_parameters"]["seed"])
    for key in ("aspect_ratio", "num_inference_steps", "width", "height"):
        assert body["provider_parameters"][key] == city["provider_parameters"][key]
    wait_images_loaded(page)
    check_images(page)


def test_delete_asks_first_then_removes_the_job(page: Page, pages: Pages, stack: Stack) -> None:
    """Delete needs a confirmation; dismissed, nothing happens; accepted, the job is gone."""
    (job,) = seed_jobs(stack, ["a paper boat to delete"])
    media_id = job["media"][0]["id"]
    watch = pages.watch(page)
    watch.answer_dialogs(False, True)
    page.goto(f"/jobs/{job['id']}")
    delete = page.get_by_role("button", name="Delete")
    delete.click()
    expect(page.locator("h1.detail-prompt")).to_be_visible()
    page.wait_for_timeout(300)
    assert stack.get(f"{API}/jobs/status/{job['id']}").status_code == 200
    assert page.url.endswith(f"/jobs/{job['id']}")

    delete.click()
    page.wait_for_url(re.compile(r"/$"))
    assert len(watch.dialogs) == 2 and "Delete this job" in watch.dialogs[0]
    assert stack.get(f"{API}/jobs/status/{job['id']}").status_code == 404
    assert stack.get(f"{API}/media/{media_id}").status_code == 404
    expect(page.locator(f"#card-{job['id']}")).to_have_count(0)


def test_cancel_from_the_job_page(page: Page, stack: Stack) -> None:
    """The job page shows live progress and can cancel a running job."""
    job_id = stack.submit(
        "a slow comet to cancel", parameters={**SMALL, "num_inference_steps": 50}
    )["id"]
    page.goto(f"/jobs/{job_id}")
    expect(page.locator(".detail-info .badge")).to_have_text("processing", timeout=5000)
    bar = page.locator(".detail-info progress")
    page.wait_for_function(
        "() => (document.querySelector('.detail-info progress') || {}).value > 0", timeout=5000
    )
    assert float(bar.get_attribute("value") or 0) > 0
    # A keyboard user: focus stays on Cancel while polls redraw the detail around it.
    page.locator(".actions").get_by_role("button", name="Cancel").focus()
    for _ in range(2):
        shown = float(bar.get_attribute("value") or 0)
        page.wait_for_function(
            "shown => document.querySelector('.detail-info progress')?.value > shown",
            arg=shown,
            timeout=5000,
        )
    focused = page.evaluate("() => document.activeElement.closest('form')?.id")
    assert focused == f"cancel-detail-{job_id}", focused
    page.keyboard.press("Enter")
    expect(page.locator(".detail-info .badge")).to_have_text("cancelled")
    # The button left with the job's end; focus goes on to the next action, not the page.
    expect(page.locator(".actions").get_by_role("link", name="Remix")).to_be_focused()
    expect(page.locator(".detail-placeholder")).to_contain_text("Cancelled")
    expect(page.locator(".actions").get_by_role("button", name="Cancel")).to_have_count(0)
    assert stack.status(job_id)["status"] == "cancelled"
    assert_polling_stopped(page, seconds=1.2)


def test_failed_job_shows_its_error(page: Page, stack: Stack) -> None:
    """A job that fails (storage refuses the file) shows its error on the card and the page."""
    wait_idle(stack)
    generated = stack.instance / "media" / "generated"
    aside = generated.with_name("generated-aside")
    generated.rename(aside)
    generated.write_text("not a folder: writing a picture here fails")
    try:
        job_id = stack.submit("a broken mirror", parameters=SMALL)["id"]
        body = stack.wait_terminal([job_id])[job_id]
    finally:
        generated.unlink()
        aside.rename(generated)
    assert body["status"] == "failed" and body["error_message"], body

    page.goto("/?status=failed")
    expect(page.locator("#status-filter")).to_have_value("failed")
    card = page.locator(f"#card-{job_id}")
    expect(card.locator(".badge").first).to_have_text("failed")
    expect(card.locator(".card-error")).to_have_text(body["error_message"])
    expect(card.locator(".placeholder-label")).to_have_text("Failed")
    assert page.locator(CARDS).evaluate_all(
        "cs => cs.every(c => c.classList.contains('status-failed'))"
    )
    card.locator("a.card-link").click()
    expect(page.locator(".alert")).to_contain_text(body["error_message"])
    expect(page.locator(".detail-placeholder")).to_contain_text("Failed")


# -- gallery: search, filter, history, infinite scroll --------------------------------------


def test_search_is_debounced_bookmarkable_and_back_works(
    page: Page, pages: Pages, stack: Stack
) -> None:
    """Active search: one request after typing stops, the URL follows, Back restores it."""
    seed_jobs(stack, ["zebra lantern at dawn", "zebra lantern in fog", "quartz meadow"])
    watch = pages.watch(page)
    page.goto("/")
    search = page.locator("#search")
    search.click()
    typed = time.monotonic()
    search.press_sequentially("zebra", delay=30)
    expect(page).to_have_url(re.compile(r"/\?q=zebra$"))
    expect(page.locator(CARDS)).to_have_count(2)
    page.wait_for_timeout(400)
    assert len(watch.requests_to("/gallery", since=typed)) == 1, "typing was not debounced"

    search.fill("zebra fog")  # one input event: one history entry, however slow the machine
    expect(page).to_have_url(re.compile(r"/\?q=zebra\+fog$"))
    expect(page.locator(CARDS)).to_have_count(1)
    expect(page.locator(CARDS).first).to_contain_text("zebra lantern in fog")

    page.locator("#status-filter").select_option("failed")
    expect(page).to_have_url(re.compile(r"/\?q=zebra\+fog&status=failed$"))
    empty = page.locator("#gallery-empty")
    expect(empty).to_contain_text("No jobs match “zebra fog”")
    expect(empty).to_contain_text("Try other words")
    expect(empty.get_by_role("link", name="clear the search")).to_have_attribute("href", "/")

    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?q=zebra\+fog$"))
    expect(page.locator("#search")).to_have_value("zebra fog")
    expect(page.locator("#status-filter")).to_have_value("")
    expect(page.locator(CARDS)).to_have_count(1)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?q=zebra$"))
    expect(page.locator(CARDS)).to_have_count(2)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#search")).to_have_value("")

    # A bookmarked search opens as it was.
    page.goto("/?q=QUARTZ")
    expect(page.locator("#search")).to_have_value("QUARTZ")
    expect(page.locator(CARDS)).to_have_count(1)
    expect(page.locator(CARDS).first).to_contain_text("quartz meadow")
    # The search still works after history navigation replaced the page.
    page.locator("#search").fill("zebra dawn")
    expect(page.locator(CARDS)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/\?q=zebra\+dawn$"))


def searched_for_two(page: Page, stack: Stack, word: str, prompts: list[str]) -> None:
    """Seed `prompts`, open the gallery and search for `word`, which two of them carry."""
    seed_jobs(stack, prompts)
    page.goto("/")
    page.locator("#search").fill(word)
    expect(page).to_have_url(re.compile(rf"/\?q={word}$"))
    expect(page.locator(CARDS)).to_have_count(2)


def test_back_pressed_before_htmx_has_loaded_shows_the_page_it_went_back_to(
    page: Page, stack: Stack
) -> None:
    """A quick second Back lands while the page is still loading its scripts: htmx has not
    started listening for history changes yet, so the page must reload itself."""
    searched_for_two(
        page, stack, "amber", ["amber kite over dunes", "amber kite at noon", "cobalt reef"]
    )
    # The page is loaded anew (as after a first Back) with htmx held at the network: the
    # two history entries now share that new page, which has not heard of htmx yet.
    held = Held(page, r"/htmx\.min\.js")
    page.reload(wait_until="commit")
    expect(page.locator(CARDS)).to_have_count(2)
    held.wait("htmx")
    page.go_back(wait_until="commit")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#search")).to_have_value("")
    expect(page.locator(CARDS).filter(has_text="cobalt reef")).to_have_count(1)
    held.stop(released=0)
    # Once htmx is there, the page works as usual.
    wait_htmx_ready(page)
    page.locator("#search").fill("cobalt")
    expect(page).to_have_url(re.compile(r"/\?q=cobalt$"))
    expect(page.locator(CARDS)).to_have_count(1)


def test_back_while_a_search_is_on_its_way_shows_the_page_it_went_back_to(
    page: Page, stack: Stack
) -> None:
    """Back loads the page anew, so a search answered afterwards cannot swap into it."""
    searched_for_two(
        page, stack, "harbor", ["harbor crane at dusk", "harbor crane in rain", "violet orchard"]
    )
    held = Held(page, r"/gallery\?")
    page.locator("#search").fill("harbor crane rain")
    held.wait("q=harbor")

    page.go_back()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#search")).to_have_value("")
    held.stop(released=0)
    page.wait_for_timeout(500)
    assert urlsplit(page.url).query == "", page.url
    assert page.locator("#search").input_value() == ""
    assert page.locator(CARDS).count() >= 3


def test_a_search_typed_while_a_job_is_created_shows_its_card_once(
    page: Page, stack: Stack
) -> None:
    """Create and search take turns: the new card is neither lost nor shown twice."""
    wait_idle(stack)
    page.goto("/")
    prompt = "a copper weathervane turning"
    fill_form(page, prompt, **SMALL)
    # The server stores the job at once; the page gets the answer only when the test says.
    held = Held(page, r"/jobs$", read_early=True)
    page.get_by_role("button", name="Generate").click()
    held.wait()
    page.locator("#search").fill("copper weathervane")
    page.wait_for_timeout(600)  # past the search's debounce: it would be on its way now

    held.release_first()
    held.stop()
    expect(page).to_have_url(re.compile(r"/\?q=copper\+weathervane$"))
    page.wait_for_timeout(300)
    cards = page.locator(CARDS)
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".card-prompt")).to_have_text(prompt)


def test_a_job_created_while_searches_are_on_their_way_is_not_dropped(
    page: Page, stack: Stack
) -> None:
    """Generate waits behind a search; a further search waits behind it, never replaces it."""
    wait_idle(stack)
    seed_jobs(stack, ["a brass compass on a map"])
    page.goto("/")
    prompt = "a brass compass in the snow"
    fill_form(page, prompt, **SMALL)
    held = Held(page, r"/gallery\?")
    page.locator("#search").fill("brass")
    held.wait("q=brass")
    page.get_by_role("button", name="Generate").click()
    page.locator("#search").fill("brass compass")
    page.wait_for_timeout(600)  # past the debounce: the second search is due too
    held.stop(released=0)

    expect(page).to_have_url(re.compile(r"/\?q=brass\+compass$"))
    new = page.locator(CARDS).filter(has_text=prompt)
    expect(new).to_have_count(1)
    expect(page.locator(CARDS)).to_have_count(2)
    listed = stack.get(f"{API}/jobs", params={"per_page": 100}).json()["jobs"]
    assert [j["prompt"] for j in listed].count(prompt) == 1


def test_a_running_card_found_again_by_search_keeps_updating(page: Page, stack: Stack) -> None:
    """Searching a running card away stops the poll; searching it back restarts it."""
    wait_idle(stack)
    prompt = "a drifting balloon over the bay"
    # The longest a demo job runs (50 steps, about 7.5 s): time for two searches.
    job_id = stack.submit(prompt, parameters={**SMALL, "num_inference_steps": 50})["id"]
    page.goto("/")
    expect(page.locator("#poller")).to_have_attribute("data-active", "true")
    card = page.locator(f"#card-{job_id}")
    expect(card.locator(".badge").first).to_have_text(re.compile("pending|processing"))

    page.locator("#search").fill("words that match nothing")
    expect(page.locator("#gallery-empty")).to_contain_text("No jobs match")
    expect(page.locator("#poller")).to_have_attribute("data-active", "false", timeout=3000)
    assert stack.status(job_id)["status"] in ("pending", "processing"), "the job ended too soon"

    page.locator("#search").fill("drifting balloon")
    expect(card).to_have_count(1)
    expect(page.locator("#poller")).to_have_attribute("data-active", "true")
    shown = float(card.locator("progress").get_attribute("value") or 0)
    page.wait_for_function(
        "([id, shown]) => document.querySelector('#card-' + id + ' progress')?.value > shown",
        arg=[job_id, shown],
        timeout=3000,
    )
    card.get_by_role("button", name="Cancel").click()
    expect(card.locator(".badge").first).to_have_text("cancelled")
    assert_polling_stopped(page, seconds=1.2)


def test_a_poll_answered_after_a_search_changed_the_gallery_is_dropped(
    page: Page, stack: Stack
) -> None:
    """A poll still on its way when a search empties the gallery swaps nothing back in.

    Its answer names a card that is gone, and a poller state older than the search's; the
    poller that asked has left the page with the search's answer.
    """
    wait_idle(stack)
    parameters = {**SMALL, "num_inference_steps": 50}
    job_id = stack.submit("a kite held by the wind", parameters=parameters)["id"]
    held = Held(page, r"/poll\?")
    page.goto("/")
    held.wait(f"id={job_id}")

    page.locator("#search").fill("words that match nothing")
    expect(page.locator("#gallery-empty")).to_contain_text("No jobs match")
    expect(page.locator("#poller")).to_have_attribute("data-active", "false")
    held.release_first()

    assert stack.status(job_id)["status"] in ("pending", "processing"), "the job ended too soon"
    assert page.locator(f"#card-{job_id}").count() == 0
    assert page.locator("#gallery-empty").is_visible()
    assert page.locator("#poller").get_attribute("data-active") == "false"
    assert page.locator("#poller").get_attribute("hx-get") is None
    held.stop()


def test_a_poll_answered_after_its_card_left_the_page_is_dropped(page: Page, stack: Stack) -> None:
    """The same with the poller still on the page: the answer is dropped, polling goes on."""
    wait_idle(stack)
    parameters = {**SMALL, "num_inference_steps": 50}
    job_id = stack.submit("a lantern on the water", parameters=parameters)["id"]
    held = Held(page, r"/poll\?")
    page.goto("/")
    held.wait(f"id={job_id}")

    page.locator(f"#card-{job_id}").evaluate("card => card.remove()")
    held.release_first()
    assert page.locator(f"#card-{job_id}").count() == 0
    assert page.locator("#poller").get_attribute("data-active") == "true"
    held.stop()
    # The next poll asks about what is on the page now: nothing runs there, so polling stops.
    expect(page.locator("#poller")).to_have_attribute("data-active", "false")
    assert stack.status(job_id)["status"] in ("pending", "processing"), "the job ended too soon"


def test_a_poll_read_before_a_cancel_does_not_show_the_job_running_again(
    page: Page, stack: Stack
) -> None:
    """The server reads a poll, Cancel lands, then that older answer arrives: it is dropped."""
    wait_idle(stack)
    parameters = {**SMALL, "num_inference_steps": 50}
    job_id = stack.submit("a paper boat to cancel", parameters=parameters)["id"]
    held = Held(page, r"/poll\?", read_early=True)
    page.goto("/")
    early = held.wait(f"id={job_id}")
    assert "badge-processing" in early or "badge-pending" in early, early
    card = page.locator(f"#card-{job_id}")
    card.get_by_role("button", name="Cancel").click()
    expect(card.locator(".badge").first).to_have_text("cancelled")

    held.release_first()
    assert card.locator(".badge").first.text_content() == "cancelled"
    assert card.locator(".js-running").count() == 0
    assert card.get_by_role("button", name="Cancel").count() == 0
    held.stop()
    assert_polling_stopped(page, seconds=1.2)
    assert stack.status(job_id)["status"] == "cancelled"


def scroll_to_the_end(page: Page) -> None:
    """Scroll the way a reader does, letting each revealed sentinel load its page."""
    cards = page.locator(CARDS)
    while page.locator(".sentinel").count():
        before = cards.count()
        # A script scroll, not a key press: layout shifts right after input do not count.
        page.locator(".sentinel").evaluate("el => el.scrollIntoView()")
        expect(cards).not_to_have_count(before)


def card_boxes(page: Page) -> list[list[float]]:
    """Where every card is, relative to the page."""
    return page.locator(CARDS).evaluate_all(
        "cs => cs.map(c => { const b = c.getBoundingClientRect();"
        " return [b.left, b.top + scrollY, b.width, b.height]; })"
    )


def test_infinite_scroll_loads_every_page_in_order(page: Page, pages: Pages, stack: Stack) -> None:
    """24 cards a page, newest first, the search kept; the sentinel loads the next page."""
    jobs = seed_jobs(stack, [f"scrollword tile {n:02d}" for n in range(30)])
    watch = pages.watch(page)
    page.goto("/?q=scrollword")
    cards = page.locator(CARDS)
    expect(cards).to_have_count(24)
    sentinel = page.locator(".sentinel")
    assert "cursor=" in (sentinel.get_attribute("hx-get") or "")
    sentinel.evaluate("el => el.scrollIntoView()")
    expect(cards).to_have_count(30)
    expect(page.locator(".sentinel")).to_have_count(0)
    assert cards.evaluate_all("cs => cs.map(c => c.id)") == [
        f"card-{j['id']}" for j in reversed(jobs)
    ]
    (load,) = watch.requests_to("/gallery")
    assert "cursor=" in load and "q=scrollword" in load, load
    assert page.url.endswith("/?q=scrollword"), "loading more does not change the address"

    # The whole gallery, page after page, is the API's newest-first list.
    listed = stack.get(f"{API}/jobs", params={"per_page": 100}).json()
    assert 24 < listed["total"] <= 100, listed["total"]
    page.goto("/")
    scroll_to_the_end(page)
    assert cards.evaluate_all("cs => cs.map(c => c.id)") == [
        f"card-{j['id']}" for j in listed["jobs"]
    ]
    assert len(watch.requests_to("/gallery")) == 1 + (listed["total"] - 1) // 24

    # Lazy thumbnails with their size reserved: nothing moves as they arrive.
    images = check_images(page)
    assert all(i["loading"] == "lazy" for i in images if "/thumbnail" in i["src"])
    page.goto("/?q=scrollword")
    sentinel.evaluate("el => el.scrollIntoView()")
    expect(cards).to_have_count(30)
    before = card_boxes(page)
    unloaded = page.locator("#gallery img").evaluate_all("is => is.filter(i => !i.complete).length")
    page.evaluate("scrollTo(0, document.body.scrollHeight)")
    wait_images_loaded(page, "#gallery img")
    assert card_boxes(page) == before, f"cards moved while {unloaded} thumbnails loaded"
    shift = page.evaluate("window.__layoutShift")
    assert shift < 0.01, f"layout shifted by {shift}"


# -- security --------------------------------------------------------------------------------


def test_script_in_a_prompt_stays_text(page: Page) -> None:
    """A prompt with markup is shown as text on the card, the job page and the title."""
    prompt = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes"'
    page.goto("/")
    fill_form(page, prompt, **SMALL)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, prompt)
    card = page.locator(f"#card-{job_id}")
    expect(card.locator("img.card-img")).to_be_visible(timeout=10_000)
    expect(card.locator("img.card-img")).to_have_attribute("alt", prompt)
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("img[src=x]").count() == 0

    card.locator("a.card-link").click()
    expect(page.locator("h1.detail-prompt")).to_have_text(prompt)
    assert page.title().startswith('<script>alert(1)</script><img src=x onerror="alert(2)">')
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert "<script>alert(1)</script>" in page.locator("pre[id^=curl-]").inner_text()
    # An `alert` would have shown up as an unexpected dialog in the page watch.


def test_unknown_job_is_an_html_404_and_the_api_stays_json(page: Page, pages: Pages) -> None:
    """HTML routes answer HTML error pages; /api/ keeps JSON."""
    pages.watch(page).expect_console(r"status of 404")
    response = page.goto("/jobs/no-such-job")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expect(page.locator("h1")).to_have_text("404")
    expect(page.locator(".error-page")).to_contain_text("Job not found")
    expect(page).to_have_title("404 · Darkroom")

    other = page.goto("/no-such-page")
    assert other is not None and other.status == 404
    assert other.headers["content-type"].startswith("text/html")

    api = page.request.get("/api/v1/jobs/status/no-such-job")
    assert api.status == 404 and api.headers["content-type"] == "application/json"
    assert api.json()["detail"] == "Job not found"

    page.get_by_role("link", name="Back to the gallery").click()
    expect(page).to_have_url(re.compile(r"/$"))


def test_strict_csp_frame_denial_and_csrf(
    page: Page, pages: Pages, stack: Stack, city: dict[str, Any]
) -> None:
    """Strict CSP on the pages, no framing, and no state change without the CSRF token."""
    for path in ("/", f"/jobs/{city['id']}"):
        response = page.goto(path)
        assert response is not None and response.ok
        policy = response.headers["content-security-policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, policy
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        inline = page.evaluate(
            """() => ({
                scripts: document.querySelectorAll("script:not([src])").length,
                styles: document.querySelectorAll("[style], style").length,
                handlers: [...document.querySelectorAll("*")].filter(
                    el => [...el.attributes].some(a => a.name.startsWith("on"))).length,
                forms: [...document.querySelectorAll("form[method=post]")].filter(
                    f => !f.querySelector("input[name=csrf_token]")?.value).length,
            })"""
        )
        assert inline == {"scripts": 0, "styles": 0, "handlers": 0, "forms": 0}, (path, inline)
        # Scripts come from this server only: htmx is vendored, no CDN.
        sources = page.eval_on_selector_all("script[src]", "ss => ss.map(s => s.src)")
        assert all(src.startswith(f"{stack.base_url}/static/") for src in sources), sources
        assert f"{stack.base_url}/static/vendor/htmx-2.0.11/htmx.min.js" in sources
        assert page.evaluate("window.htmx.version") == "2.0.11"

    # htmx sends the token in a header with every request that changes state.
    page.goto("/")
    fill_form(page, "a signed request", **SMALL)
    with page.expect_request(lambda r: r.method == "POST") as posted:
        page.get_by_role("button", name="Generate").click()
    assert posted.value.headers.get("x-csrftoken"), posted.value.headers
    job_id = new_card_id(page, "a signed request")
    stack.wait_terminal([job_id])

    # Without the token, nothing changes: not a submission, not a delete.
    total = stack.get(f"{API}/jobs").json()["total"]
    refused = page.request.post("/jobs", form={"prompt": "forged"})
    assert refused.status == 400
    assert refused.headers["content-type"].startswith("text/html")
    refused = page.request.post(f"/jobs/{job_id}/delete", form={"view": "detail"})
    assert refused.status == 400
    assert stack.get(f"{API}/jobs").json()["total"] == total
    assert stack.status(job_id)["status"] == "completed"

    # Another site cannot frame the pages (while it can frame its own).
    with framing_site(f"{stack.base_url}/") as site:
        framer = pages.new()
        watch = pages.watch(framer)
        watch.expect_console(r"frame-ancestors 'none'")
        framer.goto(site)
        framer.wait_for_function("() => document.querySelectorAll('iframe').length === 2")
        own = next(f for f in framer.frames if f.url.endswith("/own"))
        (ours,) = [f for f in framer.frames if f not in (own, framer.main_frame)]
        expect(own.locator("#framed")).to_have_text("framed")
        deadline = time.monotonic() + 5
        while not watch.expected_seen and time.monotonic() < deadline:
            framer.wait_for_timeout(50)
        assert ours.url == "chrome-error://chromewebdata/", ours.url
        assert any("The request has been blocked" in m for m in watch.expected_seen)


# -- look and feel -----------------------------------------------------------------------------


def test_keyboard_reaches_prompt_and_generate_with_visible_focus(page: Page) -> None:
    """Tab goes from the skip link to the prompt and Generate, each with a focus outline."""
    page.goto("/")
    stops = []
    for _ in range(10):
        page.keyboard.press("Tab")
        stops.append(
            page.evaluate(
                """() => {
                    const el = document.activeElement, style = getComputedStyle(el);
                    const box = el.getBoundingClientRect();
                    return {
                        tag: el.tagName, id: el.id, text: el.textContent.trim(),
                        outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
                        color: style.outlineColor, visible: box.left >= 0 && box.width > 0,
                    };
                }"""
            )
        )
        if stops[-1]["text"] == "Generate":
            break
    assert stops[0]["text"] == "Skip to content" and stops[0]["visible"], stops[0]
    by_id = {s["id"] or s["text"]: s for s in stops}
    for name in ("prompt", "Generate"):
        assert name in by_id, f"Tab never reached {name}: {stops}"
        stop = by_id[name]
        assert stop["outline"] == "solid" and stop["width"] >= 2, stop
    order = [s["id"] or s["text"] for s in stops]
    assert order.index("prompt") < order.index("Generate")


def test_layout_from_phone_to_wide(pages: Pages, city: dict[str, Any]) -> None:
    """One column and no sideways scrolling on a phone; several columns on wide screens."""
    phone = pages.new(viewport=PHONE, is_mobile=True, has_touch=True)
    for path in ("/", f"/jobs/{city['id']}", "/?q=no-such-words", "/jobs/no-such-job"):
        if "no-such-job" in path:
            pages.watch(phone).expect_console(r"status of 404")
        phone.goto(path)
        assert no_horizontal_scroll(phone), f"{path} scrolls sideways at 390px"
    phone.goto("/")
    columns = phone.locator("#gallery").evaluate(
        "g => getComputedStyle(g).gridTemplateColumns.split(' ').length"
    )
    assert columns == 1

    wide = pages.new(viewport={"width": 1920, "height": 1080})
    wide.goto("/")
    columns = wide.locator("#gallery").evaluate(
        "g => getComputedStyle(g).gridTemplateColumns.split(' ').length"
    )
    assert columns >= 5
    assert no_horizontal_scroll(wide)


def test_dark_mode_follows_the_system(pages: Pages) -> None:
    """prefers-color-scheme: dark gives a dark page with light text."""

    def luminance(page: Page, prop: str, selector: str = "body") -> float:
        rgb = page.locator(selector).evaluate(f"el => getComputedStyle(el).{prop}")
        r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    light = pages.new()
    light.goto("/")
    dark = pages.new(color_scheme="dark")
    dark.goto("/")
    assert luminance(light, "backgroundColor") > 0.8 > 0.2 > luminance(dark, "backgroundColor")
    assert luminance(dark, "color") > 0.8
    assert luminance(dark, "backgroundColor", ".create-form") < 0.2
