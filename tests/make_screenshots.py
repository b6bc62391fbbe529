"""Screenshots of the main pages for docs/screenshots/, from a fresh stack with a few pictures.

Run it alone with `.venv/bin/python -m tests.make_screenshots`; the browser test suite runs
`capture()` too, so the pictures always show the pages as they are.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from tests.browser import DESKTOP, PHONE
from tests.procs import PROJECT_ROOT, Stack, running_stack

SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"

# Oldest first (the gallery shows newest first): (prompt, aspect ratio, seed). The wide
# featured picture is the oldest, so the first row of the gallery is even.
SHOWCASE = [
    ("A beautiful sunset over mountains", "16:9", 42),
    ("a galaxy of stars", "1:1", 11),
    ("red fire and lava", "1:1", 7),
    ("a quiet forest in winter snow", "1:1", 3),
    ("deep blue ocean waves under the moon", "1:1", 5),
    ("A futuristic cityscape at night", "1:1", 2),
    ("autumn leaves in a misty park", "1:1", 13),
    ("a lighthouse on a cliff at dusk", "1:1", 17),
]
FEATURED = "A beautiful sunset over mountains"

NewPage = Callable[..., Page]


def seed_showcase(stack: Stack) -> dict[str, str]:
    """Submit the showcase prompts through the API and wait for them; ids by prompt."""
    ids = {}
    for prompt, ratio, seed in SHOWCASE:
        params: dict[str, Any] = {"aspect_ratio": ratio, "seed": seed, "num_inference_steps": 2}
        if prompt != FEATURED:
            # Shown only as cards (thumbnails are at most 512 px): no need to draw more.
            params.update(width=512, height=512)
        ids[prompt] = stack.submit(prompt, parameters=params)["id"]
    done = stack.wait_terminal(ids.values(), timeout=60)
    failed = {
        job_id: body["status"] for job_id, body in done.items() if body["status"] != "completed"
    }
    assert not failed, failed
    return ids


def _settle(page: Page) -> None:
    """Wait until every image in view has loaded, so no shot shows a half-drawn card."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        """() => [...document.images].every(img => {
            const box = img.getBoundingClientRect();
            const inView = box.top < innerHeight && box.bottom > 0;
            return !inView || (img.complete && img.naturalWidth > 0);
        })"""
    )


def _shot(page: Page, path: Path) -> Path:
    _settle(page)
    page.screenshot(path=str(path), animations="disabled", caret="initial")
    return path


def capture(stack: Stack, new_page: NewPage, out_dir: Path = SCREENSHOTS) -> list[Path]:
    """Seed the showcase and write the PNGs; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = seed_showcase(stack)
    job_path = f"/jobs/{ids[FEATURED]}"
    written = []

    desktop = new_page(viewport=DESKTOP)
    desktop.goto("/")
    written.append(_shot(desktop, out_dir / "gallery-desktop.png"))
    desktop.goto(job_path)
    written.append(_shot(desktop, out_dir / "job-desktop.png"))

    phone: dict[str, Any] = {"viewport": PHONE, "is_mobile": True, "has_touch": True}
    mobile = new_page(**phone)
    mobile.goto("/")
    written.append(_shot(mobile, out_dir / "create-phone.png"))
    mobile.locator(".gallery-head").evaluate("el => el.scrollIntoView({block: 'start'})")
    mobile.evaluate("scrollBy(0, -64)")  # leave room under the sticky top bar
    written.append(_shot(mobile, out_dir / "gallery-phone.png"))
    mobile.goto(job_path)
    written.append(_shot(mobile, out_dir / "job-phone.png"))

    dark = new_page(viewport=DESKTOP, color_scheme="dark")
    dark.goto("/")
    written.append(_shot(dark, out_dir / "gallery-dark.png"))
    return written


def main() -> None:
    """Start a stack and a browser, and write the screenshots."""
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with (
        tempfile.TemporaryDirectory(prefix="darkroom-shots-") as root,
        running_stack(Path(root), step_seconds=0.02) as stack,
        sync_playwright() as playwright,
    ):
        stack.wait_for_worker(timeout=15)
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )

        def new_page(**options: Any) -> Page:
            return browser.new_context(base_url=stack.base_url, **options).new_page()

        for path in capture(stack, new_page):
            print(path.relative_to(PROJECT_ROOT))
        browser.close()


if __name__ == "__main__":
    main()
