"""Look and feel in the browser: keyboard focus, layout from phone to wide screen, dark mode.

The stack, Chromium and the watch on every page: tests/browser.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser import PHONE, Pages, no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


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
