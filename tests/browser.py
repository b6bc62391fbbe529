"""Browser fixtures and helpers: the real stack, Debian's Chromium through Playwright, a
page watcher, and readers of what the pages show.

tests/conftest.py loads this module as a plugin, so every test file may ask for `stack`,
`browser`, `pages`, `page` and `city`; nothing starts until a test asks. The browser tests
of a test process share one stack and one Chromium (session scope), and no test relies on
another having run.

Every page a test opens is watched: console errors and warnings, uncaught exceptions,
Content-Security-Policy violations and unexpected dialogs (an `alert` from an injected
script) are collected, and the test fails at teardown if any was seen.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    APIResponse,
    Browser,
    BrowserContext,
    Dialog,
    Page,
    Route,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from tests.procs import API, Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright never downloads a browser here
# The network is closed: without these, Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_SECONDS = 0.15  # the demo model's pace per step: slow enough to watch progress
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SMALL = {"width": 128, "height": 128, "num_inference_steps": 1}  # quick jobs for seeding
SLOW = {**SMALL, "num_inference_steps": 50}  # the longest a demo job runs: about 7.5 s
CARDS = "#gallery > .card"
COUNTER = re.compile(r"(\d+) waiting · (\d+) running")

# Runs before any script of every document, outside the page's CSP (Playwright injects it).
WATCH_SCRIPT = """
(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (event) => {
    const seen = {
      directive: event.violatedDirective,
      blocked: event.blockedURI,
      sample: event.sample,
      source: event.sourceFile + ":" + event.lineNumber,
      page: location.href,
    };
    window.__csp.push(seen);
    if (window.__darkroomCsp) window.__darkroomCsp(seen);
  }, true);
  // Room for every request of a long session: poll timings are read from this buffer.
  performance.setResourceTimingBufferSize(100000);
  window.__layoutShift = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (!entry.hadRecentInput) window.__layoutShift += entry.value;
    }
  }).observe({type: "layout-shift", buffered: true});
})();
"""


@dataclass
class Watch:
    """What one page reported: console, exceptions, CSP violations, dialogs, requests."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp: list[dict[str, Any]] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    unexpected_dialogs: list[str] = field(default_factory=list)
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    expected_console: list[re.Pattern[str]] = field(default_factory=list)
    expected_seen: list[str] = field(default_factory=list)
    dialog_answers: list[bool] = field(default_factory=list)

    def expect_console(self, pattern: str) -> None:
        """Allow console messages matching `pattern` (a browser note about an expected 404)."""
        self.expected_console.append(re.compile(pattern))

    def answer_dialogs(self, *answers: bool) -> None:
        """Accept (True) or dismiss (False) the next dialogs; any other dialog is a problem."""
        self.dialog_answers.extend(answers)

    def on_console(self, message: Any) -> None:
        if message.type not in ("error", "warning"):
            return
        text = f"[{message.type}] {message.text} ({message.location.get('url', '')})"
        if any(p.search(message.text) for p in self.expected_console):
            self.expected_seen.append(text)
        else:
            self.console.append(text)

    def on_dialog(self, dialog: Dialog) -> None:
        seen = f"{dialog.type}: {dialog.message}"
        if not self.dialog_answers:
            self.unexpected_dialogs.append(seen)
            dialog.dismiss()
            return
        self.dialogs.append(seen)
        if self.dialog_answers.pop(0):
            dialog.accept()
        else:
            dialog.dismiss()

    def requests_to(self, path: str, since: float = 0.0, until: float | None = None) -> list[str]:
        """URLs requested whose path is `path`, between two `time.monotonic()` stamps."""
        until = time.monotonic() if until is None else until
        return [
            url
            for stamp, _method, url in self.requests
            if since <= stamp <= until and re.match(rf"^https?://[^/]+{re.escape(path)}(\?|$)", url)
        ]

    def problems(self) -> list[str]:
        """Everything a user would call a bug."""
        found = [f"console {m}" for m in self.console]
        found += [f"page error {e}" for e in self.page_errors]
        found += [f"CSP violation {v}" for v in self.csp]
        found += [f"unexpected dialog {d}" for d in self.unexpected_dialogs]
        return found


class Pages:
    """Opens watched pages in fresh browser contexts and checks them when the test ends."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []
        self.watches: dict[int, Watch] = {}

    def new(
        self,
        viewport: dict[str, int] | None = None,
        color_scheme: str = "light",
        base_url: str | None = None,
        **options: Any,
    ) -> Page:
        """A page in a new context (own cookies), watched from its first document."""
        # Reduced motion stops the placeholders' shimmer and the queue dot's pulse (the CSS
        # honours it): otherwise every open page repaints all the time a job runs, and
        # Chromium spends more CPU on that than on anything a test looks at.
        options.setdefault("reduced_motion", "reduce")
        context = self.browser.new_context(
            viewport=viewport or DESKTOP,
            color_scheme=color_scheme,  # type: ignore[arg-type]
            base_url=base_url or self.base_url,
            **options,
        )
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        watch = Watch()
        context.expose_binding("__darkroomCsp", lambda _source, seen: watch.csp.append(seen))
        context.add_init_script(WATCH_SCRIPT)
        page = context.new_page()
        page.on("console", watch.on_console)
        page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
        page.on("dialog", watch.on_dialog)
        page.on("request", lambda r: watch.requests.append((time.monotonic(), r.method, r.url)))
        page.on(
            "framenavigated",
            lambda frame: watch.visited.append(frame.url) if frame == page.main_frame else None,
        )
        self.watches[id(page)] = watch
        return page

    def watch(self, page: Page) -> Watch:
        """The watch of a page this object opened."""
        return self.watches[id(page)]

    def close(self) -> list[str]:
        """Close every context; return the problems seen on every page."""
        problems = []
        for watch in self.watches.values():
            if watch.dialog_answers:
                problems.append(f"expected dialogs that never came: {watch.dialog_answers}")
            problems += [f"{p} on {watch.visited}" for p in watch.problems()]
        for context in self.contexts:
            for page in context.pages:
                # The binding reports violations as they happen; the page's own list is a
                # second witness (e.g. a violation while the page was closing).
                try:
                    late = page.evaluate("window.__csp || []")
                except Exception:
                    late = []
                watch = self.watches.get(id(page))
                known = watch.csp if watch else []
                problems += [f"CSP violation {v}" for v in late if v not in known]
            context.close()
        return problems


@contextlib.contextmanager
def started_stack(folder: Path) -> Iterator[Stack]:
    """The Procfile's real web and worker processes on a fresh folder, the worker ready."""
    with running_stack(folder, step_seconds=STEP_SECONDS) as started:
        started.wait_for_worker(timeout=15)
        yield started


@pytest.fixture(scope="session", name="stack")
def stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real stack, shared by the browser tests of a test process (they leave each other's
    jobs alone; `make test` runs them all in one process, see tests/conftest.py)."""
    with started_stack(tmp_path_factory.mktemp("browser")) as started:
        yield started


@pytest.fixture(scope="session", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(name="pages")
def pages_fixture(browser: Browser, stack: Stack) -> Iterator[Pages]:
    """Open watched pages on the stack; fail the test if any page misbehaved."""
    opened = Pages(browser, stack.base_url)
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("the pages reported problems:\n" + "\n".join(problems))


@pytest.fixture(name="page")
def page_fixture(pages: Pages) -> Page:
    """A watched desktop page (1280x900, light)."""
    return pages.new()


@pytest.fixture(scope="module")
def city(stack: Stack) -> dict[str, Any]:
    """A completed 16:9 job with a fixed seed and a parameter the demo model ignores."""
    job_id = stack.submit(
        "A futuristic cityscape at night",
        parameters={
            "seed": 4242,
            "aspect_ratio": "16:9",
            "num_inference_steps": 2,
            "guidance_scale": 7.5,
        },
    )["id"]
    body = stack.wait_terminal([job_id], timeout=30)[job_id]
    assert body["status"] == "completed", body
    return body


# -- helpers ------------------------------------------------------------------------------


def seed_jobs(
    stack: Stack, prompts: list[str], timeout: float = 60, **parameters: Any
) -> list[dict[str, Any]]:
    """Submit jobs through the API (oldest first) and wait until all have ended."""
    params = {**SMALL, **parameters}
    ids = [stack.submit(prompt, parameters=params)["id"] for prompt in prompts]
    done = stack.wait_terminal(ids, timeout=timeout)
    return [done[job_id] for job_id in ids]


def wait_idle(stack: Stack, timeout: float = 30) -> None:
    """Wait until no job of the stack waits or runs (tests share one stack)."""

    def idle() -> bool:
        for status in ("pending", "processing", "retrying"):
            body = stack.get(f"{API}/jobs", params={"status": status, "per_page": 1}).json()
            if body["total"]:
                return False
        return True

    stack.wait_until("an idle queue", idle, timeout=timeout)


class Held:
    """The page's requests to URLs matching `pattern`, held at the network until let through.

    Holding one makes a race certain: the test changes the page while the request is on
    its way. With `read_early`, the server answers each request at once and only the answer
    is held: it tells the page what was true before whatever the test does next.
    """

    def __init__(self, page: Page, pattern: str, read_early: bool = False) -> None:
        self.page = page
        self.pattern = re.compile(pattern)
        self.read_early = read_early
        self.held: list[tuple[Route, APIResponse | None]] = []
        page.route(self.pattern, self._hold)

    def _hold(self, route: Route) -> None:
        self.held.append((route, route.fetch() if self.read_early else None))

    def wait(self, naming: str = "", timeout: float = 5.0) -> str:
        """Until a request is held (its URL naming `naming`); the early answer's text, if read."""
        deadline = time.monotonic() + timeout
        while not self.held and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
        assert self.held, f"the page sent no request to {self.pattern.pattern}"
        route, answer = self.held[0]
        assert naming in route.request.url, route.request.url
        return answer.text() if answer else ""

    @staticmethod
    def _let_through(route: Route, answer: APIResponse | None) -> None:
        # The page that asked may be gone (a navigation): nothing is waiting for the answer.
        with contextlib.suppress(PlaywrightError):
            if answer is None:
                route.continue_()
            else:
                route.fulfill(response=answer)

    def release_first(self) -> None:
        """Let the first held request through and its answer land; later ones stay held.

        Holding them keeps the page as that answer left it, so a test can read it once,
        without retrying: a poll let through would undo a stale swap a second later.
        """
        with self.page.expect_request_finished(lambda r: bool(self.pattern.search(r.url))):
            self._let_through(*self.held[0])
        self.page.wait_for_timeout(300)

    def stop(self, released: int = 1) -> None:
        """Let through what is still held (after the first `released`) and hold no more."""
        for route, answer in self.held[released:]:
            self._let_through(route, answer)
        self.page.unroute(self.pattern)


def wait_htmx_ready(page: Page, timeout: float = 5.0) -> None:
    """Until htmx has started on the page (it listens for history moves once ready).

    Polled from here: `wait_for_function` with an expression would `eval` it in the page,
    which the page's CSP refuses.
    """
    deadline = time.monotonic() + timeout
    while page.evaluate("typeof window.onpopstate") != "function":
        assert time.monotonic() < deadline, "htmx never started"
        page.wait_for_timeout(50)


def page_clock(page: Page) -> float:
    """The page's own clock (ms since its document started): `performance.now()`."""
    return float(page.evaluate("performance.now()"))


def polls(page: Page, since: float = 0.0, until: float | None = None) -> list[tuple[float, str]]:
    """(start ms, URL) of the page's requests to /poll, as the browser timed them.

    Playwright hands request events to Python whenever the test next talks to it, so only
    the browser's resource timing tells when a request really started.
    """
    entries = page.evaluate(
        """() => performance.getEntriesByType("resource")
            .filter(e => new URL(e.name).pathname === "/poll")
            .map(e => [e.startTime, e.name])"""
    )
    until = float("inf") if until is None else until
    return [(start, url) for start, url in entries if since <= start <= until]


def check_images(page: Page) -> list[dict[str, Any]]:
    """Every image has alt text and reserved dimensions; none that loaded is broken."""
    images = page.eval_on_selector_all(
        "img",
        """els => els.map(img => ({
            src: img.currentSrc || img.src, alt: img.getAttribute("alt"),
            width: img.getAttribute("width"), height: img.getAttribute("height"),
            complete: img.complete, natural: img.naturalWidth, loading: img.loading,
        }))""",
    )
    for image in images:
        assert (image["alt"] or "").strip(), f"image without alt text: {image}"
        assert image["width"] and image["height"], f"image without width/height: {image}"
        assert not (image["complete"] and image["natural"] == 0), f"broken image: {image}"
    return images


def wait_images_loaded(page: Page, selector: str = "img") -> None:
    """Wait until every image matching `selector` has decoded a picture."""
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)",
        arg=selector,
    )


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


def no_horizontal_scroll(page: Page) -> bool:
    """True when the page is no wider than the viewport."""
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )
