"""The gallery in the browser: active search and Back, searches and polls racing creates,
cancels and each other, and infinite scroll.

The stack, Chromium and the watch on every page: tests/browser.py.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser import (
    CARDS,
    SLOW,
    SMALL,
    Held,
    Pages,
    assert_polling_stopped,
    check_images,
    fill_form,
    seed_jobs,
    wait_htmx_ready,
    wait_idle,
    wait_images_loaded,
)
from tests.procs import API, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


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
    # The longest a demo job runs: time for two searches.
    job_id = stack.submit(prompt, parameters=SLOW)["id"]
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


def running_card_with_its_poll_held(
    page: Page, stack: Stack, prompt: str, read_early: bool = False
) -> tuple[str, Held, str]:
    """A slow job running alone, the gallery open on it, and the page's first poll held.

    Returns the job's id, the hold, and (with `read_early`) the held poll's early answer.
    """
    wait_idle(stack)
    job_id = stack.submit(prompt, parameters=SLOW)["id"]
    # Every poll, also one that names no card (`/poll` alone once the card left the page):
    # a later poll let through would undo the held answer's effect before it is read.
    held = Held(page, r"/poll(\?|$)", read_early=read_early)
    page.goto("/")
    return job_id, held, held.wait(f"id={job_id}")


def test_a_poll_answered_after_a_search_changed_the_gallery_is_dropped(
    page: Page, stack: Stack
) -> None:
    """A poll still on its way when a search empties the gallery swaps nothing back in.

    Its answer names a card that is gone, and a poller state older than the search's; the
    poller that asked has left the page with the search's answer.
    """
    job_id, held, _ = running_card_with_its_poll_held(page, stack, "a kite held by the wind")

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
    # The held poll is answered when it arrives, while the job surely runs: read only at
    # its release, a busy machine could have finished the job by then.
    job_id, held, early = running_card_with_its_poll_held(
        page, stack, "a lantern on the water", read_early=True
    )
    assert "badge-processing" in early or "badge-pending" in early, early

    page.locator(f"#card-{job_id}").evaluate("card => card.remove()")
    held.release_first()
    assert page.locator(f"#card-{job_id}").count() == 0
    assert page.locator("#poller").get_attribute("data-active") == "true"
    held.stop()
    # The next poll asks about what is on the page now: nothing runs there, so polling stops.
    expect(page.locator("#poller")).to_have_attribute("data-active", "false")


def test_a_poll_read_before_a_cancel_does_not_show_the_job_running_again(
    page: Page, stack: Stack
) -> None:
    """The server reads a poll, Cancel lands, then that older answer arrives: it is dropped."""
    job_id, held, early = running_card_with_its_poll_held(
        page, stack, "a paper boat to cancel", read_early=True
    )
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
