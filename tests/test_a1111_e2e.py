"""End to end: the Procfile's web and worker with `DARKROOM_A1111_URLS` naming two fake
AUTOMATIC1111 servers (tests/fake_a1111.py) in this process.

The module shares one stack and its two fakes; the last test kills one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_a1111 import FakeA1111, Run, wait_until
from tests.procs import API, Stack, running_stack

pytestmark = pytest.mark.e2e

MODEL = "a1111/v1-5-pruned-emaonly"
STEP_SECONDS = 0.05  # the fakes' pace per sampling step


@pytest.fixture(scope="module")
def fakes() -> Iterator[list[FakeA1111]]:
    with (
        FakeA1111(step_seconds=STEP_SECONDS) as first,
        FakeA1111(step_seconds=STEP_SECONDS) as second,
    ):
        yield [first, second]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fakes: list[FakeA1111]) -> Iterator[Stack]:
    env = {
        "DARKROOM_A1111_URLS": ",".join(fake.url for fake in fakes),
        "DARKROOM_A1111_POLL_SECONDS": "0.05",
        "DARKROOM_A1111_CONNECT_TIMEOUT": "2",
        "DARKROOM_A1111_READ_TIMEOUT": "30",
        "DARKROOM_BACKEND_RETRY_SECONDS": "300",  # a killed fake stays down for the module
    }
    root: Path = tmp_path_factory.mktemp("a1111")
    with running_stack(root, env=env) as started:
        started.wait_for_worker(timeout=15)
        yield started


def job_row(stack: Stack, job_id: str) -> tuple[str, int, int]:
    """A job's backend key, retry count and failovers, read from the database."""
    ((backend, retries, failovers),) = stack.db_rows(
        "SELECT backend, retry_count, backend_failovers FROM jobs WHERE id = ?", job_id
    )
    return backend, retries, failovers


def running_on(fakes: list[FakeA1111], job_id: str, step: int = 1) -> tuple[FakeA1111, Run]:
    """Wait until one of the fakes runs the job's task at `step` or later."""

    def find() -> tuple[FakeA1111, Run] | None:
        for fake in fakes:
            run = fake.running()
            ours = run is not None and run.task_id.startswith(f"darkroom-{job_id}-")
            if run is not None and ours and run.step >= step:
                return fake, run
        return None

    return wait_until(f"job {job_id} running on a fake", find, timeout=20)


def test_a_job_completes_on_a_server(stack: Stack, fakes: list[FakeA1111]) -> None:
    models = {m["id"]: m for m in stack.get(f"{API}/models").json()["models"]}
    assert MODEL in models and models[MODEL]["provider"] == "a1111"
    created = stack.submit(
        "a lighthouse at dusk",
        model=MODEL,
        parameters={"seed": 99, "num_inference_steps": 6, "width": 256, "height": 200},
    )
    body = stack.wait_terminal([created["id"]], timeout=30)[created["id"]]
    assert body["status"] == "completed", (body, stack.logs())
    assert body["provider_output"]["seed"] == 99
    assert [(m["width"], m["height"]) for m in body["media"]] == [(256, 200)]
    backend, retries, _ = job_row(stack, created["id"])
    assert backend == f"a1111 {fakes[0].url}" and retries == 0
    (request,) = fakes[0].calls("txt2img")
    assert request.body["force_task_id"].startswith(f"darkroom-{created['id']}")
    health = stack.get(f"{API}/health").json()["backends"]
    assert {b["url"]: b["status"] for b in health} == {f.url: "up" for f in fakes}


def test_cancel_reaches_the_server_running_the_job(stack: Stack, fakes: list[FakeA1111]) -> None:
    long = stack.submit("a long one", model=MODEL, parameters={"num_inference_steps": 150})
    fake, run = running_on(fakes, long["id"], step=2)
    # A second job goes to the other server, the one with the shorter queue.
    other_job = stack.submit("beside it", model=MODEL, parameters={"num_inference_steps": 30})
    other, other_run = running_on(fakes, other_job["id"], step=1)
    assert other is not fake
    assert stack.delete(f"{API}/jobs/{long['id']}").status_code == 204
    fake.wait_for("the interrupt", lambda: run.interrupted and run.state == "done", timeout=15)
    assert run.step < 150
    assert stack.status(long["id"])["status"] == "cancelled"
    body = stack.wait_terminal([other_job["id"]], timeout=30)[other_job["id"]]
    assert body["status"] == "completed" and not other_run.interrupted
    assert fake.calls("interrupt") and other.calls("interrupt") == []


def test_a_server_killed_mid_job_hands_it_to_the_other(
    stack: Stack, fakes: list[FakeA1111]
) -> None:
    created = stack.submit(
        "a storm", model=MODEL, parameters={"seed": 7, "num_inference_steps": 20}
    )
    fake, _ = running_on(fakes, created["id"], step=2)
    other = next(f for f in fakes if f is not fake)
    fake.stop()
    body = stack.wait_terminal([created["id"]], timeout=30)[created["id"]]
    assert body["status"] == "completed", (body, stack.logs())
    assert body["retry_count"] == 1 and body["provider_output"]["seed"] == 7
    backend, retries, failovers = job_row(stack, created["id"])
    assert backend == f"a1111 {other.url}" and (retries, failovers) == (1, 1)

    def health() -> dict[str, str]:
        return {b["url"]: b["status"] for b in stack.get(f"{API}/health").json()["backends"]}

    # The web process trusts what it read of the backends for a moment (2 s).
    stack.wait_until("the killed server shown down", lambda: health()[fake.url] == "down")
    assert health()[other.url] == "up"
    assert MODEL in {m["id"] for m in stack.get(f"{API}/models").json()["models"]}
