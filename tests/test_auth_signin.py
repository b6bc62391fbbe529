"""Sign-in throttling against the Procfile's web process, with parallel attempts.

Each attempt is counted before its password is checked, so attempts sent at once cannot
all slip through while the slow scrypt check runs (the browser flow, one attempt after
another, is in tests/test_browser_accounts.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.procs import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("signin")
    with running_stack(Path(root), worker=False, env={"DARKROOM_AUTH": "on"}) as running:
        made = running.flask("users", "create", "target", stdin="the right password\n")
        assert made.returncode == 0, made.stderr
        yield running


def attempt(stack: Stack, password: str) -> int:
    """One browser's sign-in: the form (its CSRF token), then the post; the status."""
    with requests.Session() as browser:
        form = browser.get(f"{stack.base_url}/signin", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form[:300]
        answer = browser.post(
            f"{stack.base_url}/signin",
            data={"csrf_token": token.group(1), "name": "target", "password": password},
            allow_redirects=False,
            timeout=60,
        )
        return answer.status_code


def test_parallel_wrong_passwords_get_five_checks_at_most(stack: Stack) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda _: attempt(stack, "a wrong password"), range(24)))
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(429) >= 19, statuses
    assert set(statuses) <= {401, 429}
    # The right password waits out the minute too, from this address.
    assert attempt(stack, "the right password") == 429
