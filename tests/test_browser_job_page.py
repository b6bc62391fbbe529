"""The job page in the browser: everything about a job, Remix, Vary seed, Delete, Cancel,
and a failed job's error.

The stack, Chromium and the watch on every page: tests/browser.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser import (
    CARDS,
    SLOW,
    SMALL,
    Pages,
    assert_polling_stopped,
    check_images,
    new_card_id,
    seed_jobs,
    wait_idle,
    wait_images_loaded,
)
from tests.procs import API, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def params_shown(page: Page) -> dict[str, str]:
    """The job page's first parameter list, as text."""
    return page.eval_on_selector_all(
        "dl.params >> nth=0 >> div",
        "divs => Object.fromEntries(divs.map(d => [d.querySelector('dt').textContent.trim(),"
        " d.querySelector('dd').textContent.trim()]))",
    )


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

    # Other jobs of this file may carry the same prompt: the new card is the one on top now.
    top = page.locator(CARDS).first.get_attribute("id") or ""
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(CARDS).first).not_to_have_id(top)
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
    job_id = stack.submit("a slow comet to cancel", parameters=SLOW)["id"]
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
    generated.mkdir(parents=True, exist_ok=True)  # made by the first picture stored
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
