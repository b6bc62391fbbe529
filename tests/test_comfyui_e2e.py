"""End to end: the Procfile's web and worker processes with two fake ComfyUI servers
(tests/fake_comfyui.py) in `DARKROOM_COMFYUI_URLS`: a job completes, a cancel reaches the
server running the job (and not the other), and a server stopped mid-job hands its job to
the other one."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fake_comfyui import FakeComfyUI
from tests.procs import API, Stack, running_stack

pytestmark = pytest.mark.e2e

MODEL = "comfyui/sd_xl_base_1.0"
STEP_SECONDS = 0.05


def environment(*servers: FakeComfyUI) -> dict[str, str]:
    return {
        "DARKROOM_COMFYUI_URLS": ",".join(server.url for server in servers),
        "DARKROOM_COMFYUI_CONNECT_TIMEOUT": "1",
        "DARKROOM_COMFYUI_READ_TIMEOUT": "2",
        "DARKROOM_BACKEND_RETRY_SECONDS": "60",  # a stopped server stays down for the test
    }


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeComfyUI, FakeComfyUI]]:
    with (
        FakeComfyUI(step_seconds=STEP_SECONDS) as first,
        FakeComfyUI(step_seconds=STEP_SECONDS) as second,
    ):
        yield first, second


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, servers: tuple[FakeComfyUI, FakeComfyUI]
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("comfyui-e2e")
    with running_stack(root, env=environment(*servers)) as stack:
        stack.wait_for_worker(timeout=15)
        yield stack


def submit(stack: Stack, **parameters: Any) -> str:
    body = {"num_inference_steps": 10, "width": 320, "height": 240, **parameters}
    return str(stack.submit("a lighthouse at dusk", model=MODEL, parameters=body)["id"])


def test_a_job_completes_on_the_first_idle_server(
    service: Stack, servers: tuple[FakeComfyUI, FakeComfyUI]
) -> None:
    first, second = servers
    models = [m["id"] for m in service.get(f"{API}/models").json()["models"]]
    assert MODEL in models and "comfyui/v1-5-pruned-emaonly" in models
    job_id = submit(service, seed=11)
    body = service.wait_terminal([job_id])[job_id]
    assert body["status"] == "completed", body
    assert body["provider_output"] == {
        "prompt_id": body["provider_output"]["prompt_id"],
        "server": first.name,
        "seed": 11,
    }
    (item,) = body["media"]
    picture = Image.open(io.BytesIO(service.get(item["url"]).content))
    assert picture.size == (320, 240)
    assert f"darkroom-{job_id}" in first.websocket_clients
    assert not second.calls("prompt")


def test_a_cancel_reaches_the_server_running_the_job(
    service: Stack, servers: tuple[FakeComfyUI, FakeComfyUI]
) -> None:
    first, second = servers
    first.hold(after_step=1)
    try:
        job_id = submit(service)
        first.wait_for("the job's prompt to run", lambda: first.state.step >= 1, timeout=20)
        prompt_id = first.running_id
        response = service.delete(f"{API}/jobs/{job_id}")
        assert response.status_code == 204, response.text
        interrupts = first.wait_for(
            "the interrupt", lambda: [c.body for c in first.calls("interrupt")], timeout=20
        )
    finally:
        first.release()
    assert interrupts == [{"prompt_id": prompt_id}]
    assert service.status(job_id)["status"] == "cancelled"
    history = first.wait_for("the history", lambda: first.state.history.get(prompt_id))
    assert history["status"]["messages"][-1][0] == "execution_interrupted"
    assert not second.calls("interrupt") and not second.calls("queue_edit")
    assert not second.calls("queue") and not second.calls("prompt")


def test_a_server_stopped_mid_job_hands_it_to_the_other(tmp_path: Path) -> None:
    with (
        FakeComfyUI(step_seconds=STEP_SECONDS) as doomed,
        FakeComfyUI(step_seconds=STEP_SECONDS) as spare,
        running_stack(tmp_path, env=environment(doomed, spare)) as stack,
    ):
        stack.wait_for_worker(timeout=15)
        doomed.hold(after_step=2)
        job_id = submit(stack)
        doomed.wait_for("the job mid-way", lambda: doomed.state.step >= 2, timeout=20)
        doomed.stop()
        body = stack.wait_terminal([job_id])[job_id]
        assert body["status"] == "completed", body
        assert body["retry_count"] == 1  # the move counts as one retry
        assert body["provider_output"]["server"] == spare.name
        assert spare.calls("prompt")

        def states() -> dict[str, str]:
            health = stack.get(f"{API}/health").json()
            return {b["url"]: b["status"] for b in health["backends"]}

        # The web process trusts what it read of the backends for a moment.
        stack.wait_until("the stopped server shown down", lambda: states()[doomed.url] == "down")
        assert states() == {doomed.url: "down", spare.url: "up"}
        assert MODEL in [m["id"] for m in stack.get(f"{API}/models").json()["models"]]
