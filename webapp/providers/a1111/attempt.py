"""One attempt of a job on an AUTOMATIC1111 / Forge server.

txt2img and img2img answer only once the pictures are done, so the request runs on a
thread of its own while this one reads `/sdapi/v1/progress` every `A1111_POLL_SECONDS`,
reporting progress and the live preview. A server runs one task at a time and queues the
others, and its progress is the running task's, whoever sent it. So each attempt forces its
own task id (`force_task_id`, A1111 1.6 and later, Forge), and takes progress and previews
only while the server's `current_task` is that id. The id is also the job's provider job
id: a cancel interrupts the server only while our task is the one running there. A server
too old to report `current_task` runs jobs without progress or previews, and is never
interrupted.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from typing import Any

from PIL import Image

from webapp.providers.a1111.client import API_ERROR, A1111Client, Settings
from webapp.providers.a1111.models import NOT_SENT
from webapp.providers.a1111.outputs import decode, pictures_of, report_of
from webapp.providers.backends import Backend, BackendDown, states
from webapp.providers.base import (
    GenerationTask,
    LeaseLost,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from webapp.providers.pictures import RESIZE_KEY, cover_fit, parse_size

log = logging.getLogger(__name__)

MAX_POLL_FAILURES = 3
"""Progress reads in a row that find the server not answering before the run is given up
as lost, for a run whose own connection has not noticed yet (a half-open one)."""
RUNNING_AT_MOST = 0.99  # the job is done when its pictures are stored, not before


class Call(threading.Thread):
    """The txt2img or img2img request, waiting for its answer on its own connection."""

    def __init__(
        self, backend: Backend, settings: Settings, kind: str, body: dict[str, Any]
    ) -> None:
        super().__init__(name=f"a1111-{kind}", daemon=True)
        self.backend, self.settings, self.kind, self.body = backend, settings, kind, body
        self.done = threading.Event()
        self.answer: dict[str, Any] | None = None
        self.error: ProviderError | None = None

    def run(self) -> None:
        try:
            with A1111Client(self.backend, self.settings) as client:
                self.answer = client.generate(self.kind, self.body)
        except ProviderError as exc:
            self.error = exc
        except Exception as exc:  # kept for the attempt's thread, which reports it
            log.exception("the %s request to %s failed", self.kind, self.backend.name)
            self.error = TransientProviderError(f"{API_ERROR}: {type(exc).__name__}")
        finally:
            self.done.set()

    def outcome(self) -> dict[str, Any]:
        """The answer, or the error the request ended with."""
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


class Attempt:
    """One run of one job on `task.backend`: its task id, and what was seen of it."""

    def __init__(self, task: GenerationTask, settings: Settings) -> None:
        self.task, self.settings = task, settings
        self.backend: Backend = task.backend
        self.task_id = f"darkroom-{task.job_id}-{secrets.token_hex(4)}"
        self.fraction = 0.0
        self.interrupted = False  # the server said so while our task ran
        self.started: str | None = None  # the server's `job_timestamp` of our task
        self.preview: str | None = None  # the last preview shown, as the server sent it

    def run(self) -> list[Image.Image]:
        """Start the run, follow it to the end and return its pictures at the size asked."""
        kind, body = self.request()
        with A1111Client(self.backend, self.settings) as client:
            self.stop_earlier(client)
            self.task.remember_provider_job_id(self.task_id)  # LeaseLost if cancelled
            call = Call(self.backend, self.settings, kind, body)
            call.start()
            try:
                self.follow(client, call)
            except LeaseLost:
                abandon(call, self.task_id)
                raise
            answer = call.outcome()
            self.check_ending(client)
        if self.interrupted:
            raise PermanentProviderError(
                f"{API_ERROR}: the run was interrupted on {self.backend.name}",
                details={"server": self.backend.name, "task_id": self.task_id},
            )
        count = int(body.get("batch_size") or 1)
        pictures = pictures_of(answer, count)
        self.task.output.update(report_of(answer, count))
        size = parse_size(self.task.params.get(RESIZE_KEY)) or (body["width"], body["height"])
        return [cover_fit(picture, size) for picture in pictures]

    def request(self) -> tuple[str, dict[str, Any]]:
        """The endpoint and body: the job's provider parameters, the prompt, the pictures,
        the checkpoint and our task id."""
        body = {k: v for k, v in self.task.params.items() if k not in NOT_SENT}
        body.update(
            prompt=self.task.prompt,
            override_settings={"sd_model_checkpoint": self.checkpoint()},
            # Restoring would load the previous checkpoint again after every run; the next
            # job names its own anyway.
            override_settings_restore_afterwards=False,
            force_task_id=self.task_id,
            send_images=True,
            save_images=False,
        )
        if "init_images" not in body:
            return "txt2img", body
        image, mask = self.task.inputs.get("image"), self.task.inputs.get("mask")
        if image is None:
            raise PermanentProviderError(f"{API_ERROR}: the job's input picture is missing")
        body["init_images"] = [_base64(image.data)]
        if "mask" in body:
            if mask is None:
                raise PermanentProviderError(f"{API_ERROR}: the job's mask is missing")
            body["mask"] = _base64(mask.data)
        return "img2img", body

    def checkpoint(self) -> str:
        """The checkpoint's title on this server (its `model_name` is an alias too)."""
        name = str(self.task.model.extra["backend_model"])
        for state in states(self.backend.provider):
            if state.backend == self.backend:
                found = next((m for m in state.models if m.get("name") == name), None)
                return str((found or {}).get("title") or name)
        return name

    def stop_earlier(self, client: A1111Client) -> None:
        """An earlier attempt of the job (its worker died or stalled) may still run here,
        holding the server; it is ours and nobody waits for it."""
        earlier = self.task.provider_job_id
        if not earlier or earlier == self.task_id:
            return
        try:
            if client.interrupt_if_running(earlier):
                log.info("interrupted %s, left by an earlier attempt", earlier)
        except BackendDown:
            raise
        except ProviderError as exc:
            log.info("could not check %s for an earlier attempt: %s", self.backend.name, exc)

    def follow(self, client: A1111Client, call: Call) -> None:
        """Until the request answers: read the server's progress, report ours."""
        failures = 0
        while not call.done.wait(self.settings.poll_seconds):
            try:
                self.read(client.progress(with_image=True))
                failures = 0
            except BackendDown:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise
            except ProviderError as exc:  # an odd answer; the run itself may be fine
                log.debug("progress of %s: %s", self.backend.name, exc)
            self.task.report_progress(self.fraction)  # raises LeaseLost once cancelled

    def check_ending(self, client: A1111Client) -> None:
        """Whether someone interrupted our task after the last read: the answer looks the
        same either way, with what was drawn so far. The server keeps the last task's
        state until the next one begins, so it tells as long as it is still ours (the same
        `job_timestamp`). A run too short to be seen running is never checked."""
        if self.interrupted or self.started is None:
            return
        try:
            state = client.progress(with_image=False).get("state")
        except ProviderError as exc:
            log.debug("the end of %s on %s: %s", self.task_id, self.backend.name, exc)
            return
        if isinstance(state, dict) and str(state.get("job_timestamp")) == self.started:
            self.interrupted = bool(state.get("interrupted"))

    def read(self, progress: dict[str, Any]) -> None:
        """Take the progress and preview of a `/progress` answer if our task is running."""
        if progress.get("current_task") != self.task_id:
            return  # another task runs (ours waits in the server's queue), or none
        state = progress.get("state")
        if isinstance(state, dict):
            self.interrupted = self.interrupted or bool(state.get("interrupted"))
            self.started = str(state.get("job_timestamp") or "") or None
        fraction = progress.get("progress")
        if isinstance(fraction, int | float):
            self.fraction = max(self.fraction, min(RUNNING_AT_MOST, float(fraction)))
        image = progress.get("current_image")
        if isinstance(image, str) and image and image != self.preview:
            self.preview = image
            try:
                picture = decode(image)
            except PermanentProviderError as exc:
                log.debug("preview of %s: %s", self.backend.name, exc)
                return
            self.task.report_preview(picture)


def _base64(data: bytes) -> str:
    """A picture as the API takes it: plain base64 (every version strips a `data:` prefix
    too, but plain is what its documentation shows)."""
    return base64.b64encode(data).decode("ascii")


def abandon(call: Call, task_id: str) -> None:
    """After a cancel: interrupt our task if it runs, or once it starts (it may still wait
    in the server's queue), until its request ends; on a thread of its own, so the worker
    moves on."""

    def watch() -> None:
        with A1111Client(call.backend, call.settings) as client:
            while not call.done.is_set():
                try:
                    if client.interrupt_if_running(task_id):
                        log.info("interrupted %s on %s", task_id, call.backend.name)
                        return
                except ProviderError as exc:
                    log.debug("could not interrupt %s: %s", task_id, exc)
                call.done.wait(call.settings.poll_seconds)

    threading.Thread(target=watch, name="a1111-abandon", daemon=True).start()
