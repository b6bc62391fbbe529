"""Security in the browser: the page watcher itself, markup in a prompt, 404 pages, a strict
CSP, frame denial and CSRF.

The stack, Chromium and the watch on every page: tests/browser.py.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import SMALL, Pages, fill_form, new_card_id
from tests.procs import API, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


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


@contextlib.contextmanager
def other_site(pages: dict[str, bytes], host: str = "127.0.0.1") -> Iterator[str]:
    """Another site on loopback serving `pages` (path -> HTML); its base URL as `host`
    names it (`localhost` is another site than Darkroom's 127.0.0.1, not only another
    origin)."""

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
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def framing_site(target: str) -> contextlib.AbstractContextManager[str]:
    """Another site on loopback whose page frames one of its own pages and `target`."""
    return other_site(
        {
            "/": f'<link rel="icon" href="data:,"><iframe src="/own"></iframe>'
            f'<iframe src="{target}"></iframe>'.encode(),
            "/own": b'<p id="framed">framed</p>',
        }
    )


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


def attacking_site(target: str, job_id: str) -> contextlib.AbstractContextManager[str]:
    """A page on another site (localhost, while Darkroom is 127.0.0.1) that tries every
    write a page can send without asking: a `text/plain` fetch, and form posts."""
    page = f"""<!doctype html><link rel="icon" href="data:,">
<iframe name="sink"></iframe>
<form id="create" method="post" enctype="text/plain" target="sink"
      action="{target}{API}/jobs/generate">
  <input name='{{"prompt": "from another site", "x": "' value='"}}'>
</form>
<form id="redeliver" method="post" target="sink"
      action="{target}{API}/jobs/{job_id}/webhooks/redeliver"></form>
<script>
  window.done = Promise.all([
    fetch("{target}{API}/jobs/generate", {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain"}},
      body: JSON.stringify({{prompt: "from another site"}})}}),
    fetch("{target}{API}/jobs/{job_id}/webhooks/redeliver", {{method: "POST", mode: "no-cors"}}),
  ]).then(() => "sent");
  document.getElementById("create").submit();
</script>""".encode()
    return other_site({"/": page}, host="localhost")


def test_a_page_on_another_site_cannot_create_or_resend_anything(
    pages: Pages, stack: Stack, city: dict[str, Any]
) -> None:
    """What a visitor's browser sends for another site's page is refused: 415 and 403."""
    page = pages.new()
    watch = pages.watch(page)
    watch.expect_console(r"status of 4(03|15)")
    watch.expect_console(r"X-Frame-Options")  # the forms' answers may not show in a frame
    before = stack.get(f"{API}/jobs", params={"per_page": 1}).json()["total"]
    seen: list[tuple[str, int]] = []
    page.on("response", lambda r: seen.append((r.url, r.status)))
    with attacking_site(stack.base_url, city["id"]) as attacker:
        page.goto(attacker)
        assert page.evaluate("() => window.done") == "sent"
        page.locator("#redeliver").evaluate("form => form.submit()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len([s for u, s in seen if API in u]) < 4:
            page.wait_for_timeout(100)
    answers = sorted(status for url, status in seen if API in url)
    assert answers == [403, 403, 403, 403], seen
    assert stack.get(f"{API}/jobs", params={"per_page": 1}).json()["total"] == before
    log = stack.log_text("web")
    assert '"POST /api/v1/jobs/generate HTTP/1.1" 403' in log
    assert f'"POST /api/v1/jobs/{city["id"]}/webhooks/redeliver HTTP/1.1" 403' in log
