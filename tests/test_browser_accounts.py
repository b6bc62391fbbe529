"""Accounts in the browser (`DARKROOM_AUTH=on`): the first administrator, signing in and
out, API keys made in Settings, public share links, a second user who sees only their own
work, the sign-in throttle, and a cross-site form post; with accounts off, the open-mode
notice.

The accounts tests share one stack of this module (the first test meets it fresh); the
throttle test has a stack of its own, since failed sign-ins count per address and every test
here comes from 127.0.0.1. The notice test uses the shared open stack of tests/browser.py.
Every page is watched there: a console error, an uncaught exception, a CSP violation or an
unexpected dialog fails the test that opened the page.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, Response, expect

from tests.browser import (
    CARDS,
    SMALL,
    Pages,
    fill_form,
    new_card_id,
    wait_htmx_ready,
    wait_images_loaded,
)
from tests.procs import API, Stack, running_stack
from tests.test_browser_security import other_site

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ACCOUNTS_ON = {"DARKROOM_AUTH": "on"}


@dataclass(frozen=True)
class Account:
    name: str
    password: str


ADMIN = Account("ada", "correct horse battery staple")


@contextlib.contextmanager
def watched(browser: Browser, base_url: str) -> Iterator[Pages]:
    """Watched pages on a stack; fails the test if any of them misbehaved."""
    opened = Pages(browser, base_url)
    try:
        yield opened
    finally:
        problems = opened.close()
    if problems:
        pytest.fail("the pages reported problems:\n" + "\n".join(problems))


@pytest.fixture(scope="module", name="accounts_stack")
def accounts_stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real stack with accounts on, shared by this module's tests; fresh at first."""
    with running_stack(tmp_path_factory.mktemp("accounts"), env=ACCOUNTS_ON) as started:
        started.wait_for_worker(timeout=15)
        yield started


@pytest.fixture(name="site")
def site_fixture(browser: Browser, accounts_stack: Stack) -> Iterator[Pages]:
    """Watched pages on the accounts stack."""
    with watched(browser, accounts_stack.base_url) as opened:
        yield opened


@pytest.fixture(scope="module")
def admin(browser: Browser, accounts_stack: Stack) -> Account:
    """The administrator, created on the setup page unless the first test already did."""
    with watched(browser, accounts_stack.base_url) as opened:
        page = opened.new()
        page.goto("/setup")
        if path_of(page) == "/setup":
            assert create_admin(page, ADMIN).status == 303
    return ADMIN


@pytest.fixture(scope="module")
def admin_job(browser: Browser, accounts_stack: Stack, admin: Account) -> dict[str, str]:
    """A completed job of the administrator, made on the gallery page: its id and picture path."""
    with watched(browser, accounts_stack.base_url) as opened:
        page = signed_in(opened, admin)
        job_id = make_job(page, "a lighthouse only its owner may see")
        page.goto(f"/jobs/{job_id}")
        media_path = urlsplit(page.locator(".detail-figure img").get_attribute("src") or "").path
    return {"id": job_id, "media_path": media_path}


# -- helpers ------------------------------------------------------------------------------


def asks_sign_in(then: str) -> re.Pattern[str]:
    """The sign-in page's URL when it will go on to `then` (a path, quoted or not)."""
    quoted = re.escape(then).replace("/", "(/|%2F)")
    return re.compile(rf"/signin\?next={quoted}$")


def path_of(page: Page) -> str:
    """The path of the page's URL."""
    return urlsplit(page.url).path


def send(page: Page, button: str) -> Response:
    """Press a form's button; the answer to its POST, once the page it led to has loaded
    (so the next step never acts on the page being left)."""
    with (
        page.expect_navigation(),
        page.expect_response(lambda r: r.request.method == "POST") as answer,
    ):
        page.get_by_role("button", name=button).click()
    return answer.value


def create_admin(page: Page, account: Account, again: str | None = None) -> Response:
    """Fill the setup page's form and send it; the answer to the POST."""
    page.locator("#setup-name").fill(account.name)
    page.locator("#setup-password").fill(account.password)
    page.locator("#setup-password2").fill(again if again is not None else account.password)
    return send(page, "Create the account")


def submit_sign_in(page: Page, name: str, password: str) -> Response:
    """Fill the sign-in form and send it; the answer to the POST."""
    page.locator("#signin-name").fill(name)
    page.locator("#signin-password").fill(password)
    return send(page, "Sign in")


def signed_in(pages: Pages, account: Account) -> Page:
    """A page in a new context, signed in as `account`, on the gallery."""
    page = pages.new()
    page.goto("/signin")
    submit_sign_in(page, account.name, account.password)
    expect(sign_out_button(page, account)).to_be_visible()
    return page


def sign_out_button(page: Page, account: Account) -> Locator:
    """The top bar's button that signs `account` out."""
    return page.get_by_role("button", name=f"Sign out {account.name}")


def make_job(page: Page, prompt: str) -> str:
    """Make a quick job with the gallery's form; its id, once its picture shows."""
    page.goto("/")
    fill_form(page, prompt, **SMALL)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, prompt, timeout=10_000)
    expect(page.locator(f"#card-{job_id} img.card-img")).to_be_visible(timeout=15_000)
    return job_id


def api_jobs(stack: Stack, key: str) -> requests.Response:
    """`GET /api/v1/jobs` with a bearer key and no cookie."""
    return requests.get(
        stack.url(f"{API}/jobs"), headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def meta(page: Page, prop: str) -> str:
    """The content of an Open Graph tag."""
    return page.locator(f'meta[property="{prop}"]').get_attribute("content") or ""


# -- the first administrator, signing in and out --------------------------------------------


def test_the_first_page_creates_the_administrator(site: Pages) -> None:
    """A fresh install asks for the administrator; afterwards the gallery, signed in."""
    page = site.new()
    site.watch(page).expect_console(r"status of 422")
    page.goto("/")
    assert path_of(page) == "/setup", f"not a fresh install: landed on {page.url}"
    expect(page.locator("h1")).to_have_text("Create the administrator account")
    expect(page.locator("#open-notice")).to_have_count(0)  # accounts are on

    assert create_admin(page, ADMIN, again="correct horse battery stapler").status == 422
    expect(page.get_by_role("alert")).to_have_text("The two passwords differ")
    expect(page.locator("#setup-name")).to_have_value(ADMIN.name)  # kept for the retry
    expect(page.get_by_role("button", name=re.compile("^Sign out"))).to_have_count(0)

    assert create_admin(page, ADMIN).status == 303
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#create-form")).to_be_visible()
    expect(page.locator("#gallery-empty")).to_be_visible()
    expect(sign_out_button(page, ADMIN)).to_be_visible()
    expect(page.get_by_role("link", name="Settings")).to_be_visible()

    page.goto("/setup")  # there is an account now: the setup page is gone
    expect(page).to_have_url(re.compile(r"/$"))
    expect(sign_out_button(page, ADMIN)).to_be_visible()


def test_sign_out_and_back_in_where_you_were(site: Pages, admin: Account) -> None:
    """Signed out, every page asks to sign in; a wrong password is refused; the right one
    goes back to the page that asked."""
    page = signed_in(site, admin)
    site.watch(page).expect_console(r"status of 401")
    sign_out_button(page, admin).click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_role("button", name=re.compile("^Sign out"))).to_have_count(0)
    expect(page.get_by_role("link", name="Settings")).to_have_count(0)

    page.goto("/settings")
    expect(page).to_have_url(asks_sign_in("/settings"))
    expect(page.locator("h1")).to_have_text("Sign in")

    assert submit_sign_in(page, admin.name, "not the password").status == 401
    expect(page.get_by_role("alert")).to_have_text("Wrong name or password")
    expect(page.get_by_role("button", name=re.compile("^Sign out"))).to_have_count(0)

    assert submit_sign_in(page, admin.name, admin.password).status == 303
    expect(page).to_have_url(re.compile(r"/settings$"))
    expect(page.locator("h1")).to_have_text("Settings")
    expect(sign_out_button(page, admin)).to_be_visible()

    # `next` only ever leads to a page of this site.
    page.goto("/signin?next=https://example.org/")
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/$"))


# -- API keys -------------------------------------------------------------------------------


def test_an_api_key_is_shown_once_works_and_can_be_revoked(
    site: Pages, accounts_stack: Stack, admin: Account
) -> None:
    """Settings makes a key, shows it this once, the API takes it; revoked, it answers 401."""
    page = signed_in(site, admin)
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("h1")).to_have_text("Settings")
    page.locator("#key-name").fill("nightly script")
    scopes = page.locator("input[name=scope]")
    assert scopes.evaluate_all("els => els.map(e => e.value)") == [
        "read",
        "generate",
        "delete",
        "admin",
    ]  # an administrator may hand out `admin`
    expect(page.locator("input[name=scope][value=read]")).to_be_checked()
    page.locator("input[name=scope][value=generate]").check()
    page.locator("#key-expiry").select_option(label="30 days")
    page.get_by_role("button", name="Create key").click()

    shown = page.locator("input#new-key")
    expect(shown).to_have_value(re.compile(r"^dr_[A-Za-z0-9_-]{20,}$"))
    key = shown.input_value()
    row = page.locator("table.keys tbody tr", has_text="nightly script")
    expect(row).to_have_count(1)
    cells = row.locator("td")
    expect(cells.nth(0)).to_have_text("nightly script")
    prefix = cells.nth(1).inner_text().rstrip("…")
    assert len(prefix) > len("dr_") and key.startswith(prefix), (prefix, key)
    assert key not in cells.nth(1).inner_text()  # the table shows only the prefix
    expect(cells.nth(2)).to_have_text("read, generate")
    expect(cells.nth(4)).to_have_text("never")
    created = datetime.fromisoformat(cells.nth(3).locator("time").get_attribute("datetime") or "")
    expires = datetime.fromisoformat(cells.nth(5).locator("time").get_attribute("datetime") or "")
    assert abs((expires - created).total_seconds() - 30 * 86400) < 60, (created, expires)

    answer = api_jobs(accounts_stack, key)
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json()["jobs"], list)

    # Back to Settings (a new page load, not a resend of the form): the key is gone from it.
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("h1")).to_have_text("Settings")
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(4).locator("time")).to_be_visible()  # used once by now

    page.get_by_role("button", name="Revoke nightly script").click()
    expect(page.locator("main").get_by_role("status")).to_contain_text(f"Key {prefix} revoked")
    expect(row.locator("td").last).to_have_text("revoked")
    expect(page.get_by_role("button", name="Revoke nightly script")).to_have_count(0)
    refused = api_jobs(accounts_stack, key)
    assert refused.status_code == 401, refused.text
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


# -- share links ----------------------------------------------------------------------------


def test_a_share_link_shows_the_picture_to_anyone_until_revoked(
    site: Pages, accounts_stack: Stack, admin: Account
) -> None:
    """The owner makes a public link on the job page; a browser with no session sees the
    picture, prompt and model (and a link preview's tags); revoked, the link is a 404."""
    prompt = "a harbour at dawn, shared with a friend"
    page = signed_in(site, admin)
    job_id = make_job(page, prompt)
    page.locator(f"#card-{job_id} a.card-link").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}$"))
    wait_htmx_ready(page)
    shares = page.locator("#shares")
    expect(shares.get_by_role("heading", name="Share")).to_be_visible()
    expect(shares.locator("input.share-url")).to_have_count(0)
    page.locator("#share-expiry").select_option(label="7 days")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        shares.get_by_role("button", name="Create a public link").click()
    assert answer.value.request.headers.get("hx-request") == "true"  # swapped in, no reload
    link = shares.locator("input.share-url")
    expect(link).to_have_count(1)
    url = link.input_value()
    assert re.fullmatch(rf"{re.escape(accounts_stack.base_url)}/s/[\w-]{{16,}}", url), url
    expect(shares.locator(".share-item")).to_contain_text("until")
    token_path = urlsplit(url).path

    # A friend's browser: no cookie, no account.
    friend = site.new()
    friend_watch = site.watch(friend)
    friend_watch.expect_console(r"status of 404")
    opened = friend.goto(url)
    assert opened is not None and opened.status == 200
    assert friend.context.cookies() == []  # the public page starts no session
    expect(friend.locator("h1.detail-prompt")).to_have_text(prompt)
    expect(friend.locator(".detail-info")).to_contain_text("demo")
    picture = friend.locator(".detail-figure img")
    expect(picture).to_have_count(1)
    wait_images_loaded(friend)
    assert picture.evaluate("img => img.naturalWidth") > 0
    src = urlsplit(picture.get_attribute("src") or "").path
    assert re.fullmatch(rf"{re.escape(token_path)}/media/[\w-]+", src), src
    expect(friend.locator("form")).to_have_count(0)  # nothing to change, nothing to sign
    expect(friend.get_by_role("link", name="Settings")).to_have_count(0)
    assert meta(friend, "og:title") == prompt
    assert meta(friend, "og:url") == url
    og_image = meta(friend, "og:image")
    assert og_image == accounts_stack.base_url + src, og_image
    fetched = friend.request.get(og_image)  # a link preview's fetcher has no cookie either
    assert fetched.status == 200 and fetched.headers["content-type"].startswith("image/")

    with page.expect_response(lambda r: r.request.method == "POST"):
        shares.get_by_role("button", name="Revoke").click()
    expect(shares.locator("input.share-url")).to_have_count(0)
    expect(shares.locator(".share-item")).to_contain_text("revoked")
    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}$"))

    gone = friend.reload()
    assert gone is not None and gone.status == 404
    expect(friend.locator("h1")).to_have_text("404")
    expect(friend.locator(".error-page")).to_contain_text("revoked")
    assert friend.request.get(og_image).status == 404


# -- users ----------------------------------------------------------------------------------


def test_a_new_user_sees_only_their_own_work_until_disabled(
    site: Pages, admin: Account, admin_job: dict[str, str]
) -> None:
    """The administrator adds a user in Settings; that user sees none of the administrator's
    jobs (their pages are 404s), and once disabled is sent to sign in."""
    bea = Account("bea", "a long enough password")
    page = signed_in(site, admin)
    page.goto("/settings")
    page.locator("#new-user-name").fill(bea.name)
    page.locator("#new-user-password").fill(bea.password)
    page.get_by_role("button", name="Add user").click()
    expect(page.locator("main").get_by_role("status")).to_have_text(f"User {bea.name} added")
    row = page.locator(f"#user-{bea.name}")
    expect(row.locator("td").nth(1)).to_have_text("user")
    expect(row.locator("td").nth(2)).to_have_text("active")

    other = signed_in(site, bea)
    site.watch(other).expect_console(r"status of 404")
    expect(other).to_have_url(re.compile(r"/$"))
    expect(other.locator("#gallery-empty")).to_be_visible()
    expect(other.locator(CARDS)).to_have_count(0)
    expect(other.locator(f"#card-{admin_job['id']}")).to_have_count(0)
    hidden = other.goto(f"/jobs/{admin_job['id']}")
    assert hidden is not None and hidden.status == 404
    expect(other.locator(".error-page")).to_contain_text("Job not found")
    assert other.request.get(admin_job["media_path"]).status == 404
    other.goto("/settings")  # no administration for a user
    expect(other.locator("#users-title")).to_have_count(0)
    expect(other.locator("input[name=scope][value=admin]")).to_have_count(0)
    other.goto("/")

    row.get_by_role("button", name="Disable").click()
    expect(page.locator("main").get_by_role("status")).to_have_text(f"{bea.name} disabled")
    expect(row.locator("td").nth(2)).to_have_text("disabled")
    expect(row.get_by_role("button", name="Enable")).to_be_visible()

    other.reload()
    expect(other).to_have_url(asks_sign_in("/"))
    expect(other.get_by_role("button", name=re.compile("^Sign out"))).to_have_count(0)


# -- another site's page --------------------------------------------------------------------


def prize_site(base: str, job_id: str) -> contextlib.AbstractContextManager[str]:
    """Another site (localhost, while Darkroom is 127.0.0.1) whose buttons post to
    Darkroom's page actions: delete a job, make an API key with every scope."""
    page = f"""<!doctype html><link rel="icon" href="data:,">
<form method="post" action="{base}/jobs/{job_id}/delete">
  <input type="hidden" name="view" value="detail"><button>See your prize</button>
</form>
<form method="post" action="{base}/settings/keys">
  <input type="hidden" name="name" value="planted">
  <input type="hidden" name="scope" value="admin"><button>Claim your prize</button>
</form>""".encode()
    return other_site({"/": page}, host="localhost")


def press_on_other_site(page: Page, site_url: str, base: str, button: str) -> Response:
    """Open the other site, press one of its buttons; Darkroom's answer to the post."""
    page.goto(site_url)
    with page.expect_navigation(url=re.compile(re.escape(base))) as landed:
        page.get_by_role("button", name=button).click()
    answer = landed.value
    assert answer is not None and answer.request.method == "POST", button
    return answer


def test_a_form_on_another_site_cannot_delete_a_job_or_make_a_key(
    site: Pages, accounts_stack: Stack, admin: Account, admin_job: dict[str, str]
) -> None:
    """A signed-in administrator presses buttons on another site that post to Darkroom's
    page actions: both posts are refused, nothing is deleted and no key is made."""
    base = accounts_stack.base_url
    page = signed_in(site, admin)
    site.watch(page).expect_console(r"status of 4\d\d")
    with prize_site(base, admin_job["id"]) as elsewhere:
        for button in ("See your prize", "Claim your prize"):
            answer = press_on_other_site(page, elsewhere, base, button)
            assert 400 <= answer.status < 500, (button, answer.status)

    owner = signed_in(site, admin)  # a browser of the administrator's that went nowhere
    shown = owner.goto(f"/jobs/{admin_job['id']}")
    assert shown is not None and shown.status == 200
    expect(owner.locator("h1.detail-prompt")).to_be_visible()
    owner.goto("/settings")
    expect(owner.locator("h1")).to_have_text("Settings")
    expect(owner.locator("table.keys", has_text="planted")).to_have_count(0)


def test_a_refused_post_from_another_site_does_not_sign_you_out(
    site: Pages, accounts_stack: Stack, admin: Account, admin_job: dict[str, str]
) -> None:
    """The answer refusing another site's post leaves the visitor's session alone: no other
    site can sign a Darkroom user out."""
    base = accounts_stack.base_url
    page = signed_in(site, admin)
    site.watch(page).expect_console(r"status of 4\d\d")
    with prize_site(base, admin_job["id"]) as elsewhere:
        answer = press_on_other_site(page, elsewhere, base, "Claim your prize")
    assert 400 <= answer.status < 500, answer.status
    # (The cookie's own time stamp moves with every page request of a signed-in browser, so
    # the answer itself is what must leave it alone.)
    assert answer.header_value("set-cookie") is None
    page.goto("/")
    expect(sign_out_button(page, admin)).to_be_visible()


# -- the sign-in throttle -------------------------------------------------------------------


def test_sign_in_waits_after_five_failures(browser: Browser, tmp_path: Path) -> None:
    """After 5 failed sign-ins in a minute the 6th waits (429, Retry-After), even with the
    right password; the address waits too, whatever name it tries."""
    with (
        running_stack(tmp_path / "throttle", worker=False, env=ACCOUNTS_ON) as stack,
        watched(browser, stack.base_url) as pages,
    ):
        page = pages.new()
        page.goto("/")
        assert create_admin(page, ADMIN).status == 303
        expect(sign_out_button(page, ADMIN)).to_be_visible()

        guest = pages.new()
        pages.watch(guest).expect_console(r"status of 4(01|29)")
        guest.goto("/")
        expect(guest).to_have_url(asks_sign_in("/"))
        for attempt in range(5):
            answer = submit_sign_in(guest, ADMIN.name, f"guess number {attempt}")
            assert answer.status == 401, (attempt, answer.status)
            expect(guest.get_by_role("alert")).to_have_text("Wrong name or password")

        answer = submit_sign_in(guest, ADMIN.name, ADMIN.password)
        assert answer.status == 429
        wait = int(answer.headers["retry-after"])
        assert 1 <= wait <= 60, wait
        expect(guest.get_by_role("alert")).to_have_text(
            f"Too many failed sign-ins. Try again in {wait} seconds."
        )
        expect(guest.get_by_role("button", name=re.compile("^Sign out"))).to_have_count(0)

        answer = submit_sign_in(guest, "someone-else", "another guess")
        assert answer.status == 429  # the address counts too
        expect(guest.get_by_role("alert")).to_contain_text("Too many failed sign-ins.")

        page.reload()  # a session already signed in is not affected
        expect(sign_out_button(page, ADMIN)).to_be_visible()


# -- accounts off: the open-mode notice -------------------------------------------------------


def test_open_mode_notice_explains_and_can_be_dismissed(pages: Pages) -> None:
    """With accounts off every page says so, links to how to turn them on, and can be
    dismissed for good in this browser without a page load."""
    page = pages.new()
    page.goto("/")
    notice = page.locator("#open-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Anyone who can reach this page can use it")

    notice.get_by_role("link", name="How to turn accounts on").click()
    expect(page).to_have_url(re.compile(r"/help/accounts$"))
    expect(page.locator("h1")).to_have_text("Accounts and API keys")
    expect(page.locator("pre.readme")).to_contain_text("DARKROOM_AUTH=on")

    page.goto("/")
    wait_htmx_ready(page)
    page.evaluate("window.__samePage = true")
    with page.expect_response(lambda r: r.url.endswith("/notice/dismiss")) as answer:
        notice.get_by_role("button", name="Dismiss this notice").click()
    assert answer.value.ok and answer.value.request.headers.get("hx-request") == "true"
    expect(notice).to_have_count(0)
    assert page.evaluate("window.__samePage === true"), "dismissing loaded a page"

    page.reload()
    expect(page.locator("#create-form")).to_be_visible()
    expect(page.locator("#open-notice")).to_have_count(0)
    page.goto("/help/accounts")
    expect(page.locator("#open-notice")).to_have_count(0)

    elsewhere = pages.new()  # another browser has not dismissed it
    elsewhere.goto("/")
    expect(elsewhere.locator("#open-notice")).to_be_visible()
