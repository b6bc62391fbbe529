"""A fresh install in the browser: the empty gallery, and the docs' screenshots.

Each test here gets a stack of its own, whose gallery starts empty. Debian's headless
Chromium against the Procfile's gunicorn + huey_consumer; every page is watched
(tests/browser.py): a console error or warning, an uncaught exception, a CSP violation or an
unexpected dialog fails the test that opened the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests import make_screenshots
from tests.browser import CARDS, DESKTOP, PHONE, Pages, counter, started_stack
from tests.procs import API, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(name="stack")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this test's own: an install nobody has used yet."""
    with started_stack(tmp_path_factory.mktemp("fresh")) as started:
        yield started


def test_empty_gallery_says_what_to_do(page: Page, stack: Stack) -> None:
    """A fresh install shows how to make the first picture."""
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
    """The docs' screenshots, from a gallery holding only the showcase.

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
