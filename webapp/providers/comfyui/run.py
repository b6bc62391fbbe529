"""One attempt of a ComfyUI job on its server: send the input pictures, queue the filled-in
workflow (or find the prompt an earlier attempt queued there), follow it to its end, and
download its outputs.

Progress and previews come from the websocket, opened before the prompt is queued so
nothing is missed; its client id is the job's, so a later attempt that follows the same
prompt gets its messages. Without a websocket (or once it breaks while the server still
answers HTTP) the prompt's history is polled instead. How a prompt ended is always read
from its history, whichever way its end was noticed.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import time
import uuid
from typing import Any

from flask import current_app
from PIL import Image

from webapp.providers.base import (
    GenerationTask,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from webapp.providers.comfyui import workflows
from webapp.providers.comfyui.client import (
    API_ERROR,
    MAX_DETAIL,
    ComfyUIClient,
    Settings,
    decode_picture,
)
from webapp.providers.comfyui.events import Dropped, Listener, Message, Preview
from webapp.providers.comfyui.models import needs_input
from webapp.providers.pictures import RESIZE_KEY, cover_fit, parse_size

log = logging.getLogger(__name__)

QUIET_SECONDS = 5.0  # with no message for this long, the history is checked anyway
POLL_SECONDS = (0.1, 1.0)  # the history's first and longest poll interval without websocket
MAX_RECONNECTS = 3  # websocket drops of one prompt after which the history is polled
HISTORY_WAIT_SECONDS = 10.0  # after its end message, how long a prompt's history may lag
INPAINT_FROM_NOISE = 1.0  # a strength from which a mask is repainted from noise
ENDED = ("execution_success", "execution_error", "execution_interrupted")
OUT_OF_MEMORY = ("OutOfMemoryError", "OOM")


def client_id(job_id: str) -> str:
    """The websocket client id of a job's prompts (the same for each of its attempts)."""
    return f"darkroom-{job_id}"


class Attempt:
    """One attempt of one job on `task.backend`."""

    def __init__(self, client: ComfyUIClient, task: GenerationTask) -> None:
        self.client, self.task = client, task
        self.settings: Settings = client.settings
        self.listener = Listener(client, client_id(task.job_id))
        self.prompt_id: str | None = None
        self.committed = False  # the job holds prompt_id, so a later attempt can find it
        self.progress = 0.0

    def run(self) -> list[Image.Image]:
        """Queue (or find) the prompt, follow it, and return its outputs at the size asked."""
        try:
            entry = self.resume() if self.task.provider_job_id else None
            if entry is None:
                self.listener.open()
                entry = self.follow(self.queue())
            return self.collect(entry)
        finally:
            self.listener.close()

    # -- queueing -------------------------------------------------------------------------

    def resume(self) -> dict[str, Any] | None:
        """The earlier attempt's prompt, followed to its end, when this server has it and
        it did not fail (the earlier attempt reported that failure: this one tries again)."""
        prompt_id = str(self.task.provider_job_id)
        self.listener.open()  # before looking, so an end after the look is not missed
        entry = self.client.history(prompt_id)
        if entry is None and self.client.place(prompt_id) is None:
            entry = self.client.history(prompt_id)  # it may have ended between the two
            if entry is None:
                self.listener.close()
                return None
        if entry is not None and outcome_error(entry, prompt_id, "") is not None:
            self.listener.close()
            return None
        self.prompt_id, self.committed = prompt_id, True
        log.info("job %s follows prompt %s again", self.task.job_id, prompt_id)
        return entry if entry is not None else self.follow(prompt_id)

    def queue(self) -> str:
        """Send the pictures, fill the workflow in and queue it, committing its id first."""
        graph = self.graph()
        values = {**self.task.params, "prompt": self.task.prompt, **self.send_inputs()}
        try:
            graph = workflows.fill(graph, values)
        except KeyError as exc:
            raise PermanentProviderError(
                f"{API_ERROR}: no value for the workflow's {{{{{exc.args[0]}}}}}"
            ) from None
        # The id is ours and committed before the server hears of it: an attempt that dies
        # before the answer arrives leaves a prompt the next one can find.
        prompt_id = str(uuid.uuid4())
        self.task.remember_provider_job_id(prompt_id)  # LeaseLost if the job is gone
        self.prompt_id, self.committed = prompt_id, True
        queued = self.client.queue_prompt(graph, self.listener.client_id, prompt_id)
        if queued != prompt_id:  # an older server that makes its own ids
            self.prompt_id, self.committed = queued, False
            self.task.remember_provider_job_id(queued)
            self.committed = True
        server = self.client.backend.name
        log.info("job %s queued prompt %s on %s", self.task.job_id, queued, server)
        return queued

    def graph(self) -> dict[str, Any]:
        """The job's workflow with its placeholders: a user's file, or the built-in one."""
        extra = self.task.model.extra
        if "workflow" in extra:
            workflow = workflows.find(current_app.instance_path, str(extra["workflow"]))
            if workflow is None:
                raise PermanentProviderError(
                    f"{API_ERROR}: the workflow file {extra['workflow']}.json is gone or "
                    "no longer usable"
                )
            for role in workflow.inputs:
                if role not in self.task.inputs:
                    raise PermanentProviderError(needs_input(workflow.name, role))
            return workflow.graph
        inputs = self.task.inputs
        mode = "inpaint" if "mask" in inputs else "img2img" if "image" in inputs else "txt2img"
        strength = float(self.task.params.get("prompt_strength") or 0)
        return workflows.builtin(
            str(extra["checkpoint"]), mode, full_repaint=strength >= INPAINT_FROM_NOISE
        )

    def send_inputs(self) -> dict[str, str]:
        """Upload the job's pictures; the names the workflow's `{{image}}` and `{{mask}}`
        take. The built-in workflow renders at the picture's size, so it is first fitted to
        the size asked (in 8-pixel blocks) as a cover crop."""
        names = {}
        builtin = "workflow" not in self.task.model.extra
        size = (int(self.task.params.get("width", 0)), int(self.task.params.get("height", 0)))
        for role in ("image", "mask"):
            picture = self.task.inputs.get(role)
            if picture is None:
                continue
            data, mime_type = picture.data, picture.mime_type
            name = f"darkroom-{picture.upload_id}"
            if builtin and (picture.width, picture.height) != size:
                fitted = cover_fit(picture.image(), size)
                buffer = io.BytesIO()
                fitted.save(buffer, "PNG")
                data, mime_type = buffer.getvalue(), "image/png"
                name += f"-{size[0]}x{size[1]}"
            name += mimetypes.guess_extension(mime_type) or ".png"
            names[role] = self.client.upload_image(data, name, mime_type)
        return names

    # -- following ------------------------------------------------------------------------

    def follow(self, prompt_id: str) -> dict[str, Any]:
        """Follow a prompt until its history entry shows its end; report progress and
        previews on the way; interrupt it past the deadline."""
        deadline = time.monotonic() + self.settings.deadline_seconds
        last_news = time.monotonic()
        poll = POLL_SECONDS[0]
        drops = 0
        while True:
            self.task.report_progress(self.progress)  # raises LeaseLost once cancelled
            if time.monotonic() > deadline:
                self.client.stop_quietly(prompt_id)
                raise TransientProviderError(
                    f"{API_ERROR}: the prompt did not finish within "
                    f"{self.settings.deadline_seconds:g} s",
                    details={"prompt_id": prompt_id, "server": self.client.backend.name},
                )
            if self.listener.connected:
                try:
                    news = self.listener.receive()
                except Dropped:
                    # Reconnected, the messages go on; else (or once it broke too often)
                    # the history is polled. Either way the server is asked at once:
                    # BackendDown if it is gone too.
                    log.info("websocket of %s dropped", self.client.backend.name)
                    drops += 1
                    if drops <= MAX_RECONNECTS:
                        self.listener.open()
                    entry = self.check(prompt_id)
                    if entry is not None:
                        return entry
                    continue
                if news is not None and (isinstance(news, Preview) or news.prompt_id == prompt_id):
                    last_news = time.monotonic()  # news of ours (not of other clients' prompts)
                if news is not None and self.heard(prompt_id, news):
                    return self.ended(prompt_id)
                if time.monotonic() - last_news > QUIET_SECONDS:
                    last_news = time.monotonic()
                    entry = self.check(prompt_id)
                    if entry is not None:
                        return entry
            else:
                entry = self.check(prompt_id)
                if entry is not None:
                    return entry
                time.sleep(poll)
                poll = min(POLL_SECONDS[1], poll * 2)

    def heard(self, prompt_id: str, news: Message | Preview) -> bool:
        """Take in one message or preview; True once the prompt has ended."""
        if isinstance(news, Preview):
            if news.prompt_id in (None, prompt_id):
                try:
                    self.task.report_preview(decode_picture(news.data, "a preview"))
                except PermanentProviderError:
                    log.debug("unreadable preview from %s", self.client.backend.name)
            return False
        if news.prompt_id != prompt_id:
            return False
        if news.type == "progress":
            value, most = news.data.get("value"), news.data.get("max")
            if isinstance(value, int | float) and isinstance(most, int | float) and most > 0:
                # A second sampler starts at 0 again: the bar never goes back.
                self.progress = max(self.progress, min(1.0, value / most))
            return False
        if news.type == "executing" and news.data.get("node") is None:
            return True  # the end, once the history is written
        return news.type in ENDED

    def check(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry once it ended; None while it waits or runs. A prompt
        the server no longer has (removed from its queue, or the server restarted) is a
        transient error: a retry queues it again."""
        entry = self.client.history(prompt_id)
        if entry is not None:
            return entry
        if self.client.place(prompt_id) is not None:
            return None
        entry = self.client.history(prompt_id)  # it may have ended between the two
        if entry is None:
            raise TransientProviderError(
                f"{API_ERROR}: the prompt is no longer queued on {self.client.backend.name} "
                "(removed, or the server restarted)",
                details={"prompt_id": prompt_id, "server": self.client.backend.name},
            )
        return entry

    def ended(self, prompt_id: str) -> dict[str, Any]:
        """The history entry of a prompt whose end was announced: ComfyUI announces
        success a moment before it writes the history."""
        give_up = time.monotonic() + HISTORY_WAIT_SECONDS
        pause = 0.02
        while True:
            entry = self.client.history(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() > give_up:
                raise TransientProviderError(
                    f"{API_ERROR}: the prompt ended but its history did not appear",
                    details={"prompt_id": prompt_id, "server": self.client.backend.name},
                )
            self.task.report_progress(self.progress)
            time.sleep(pause)
            pause = min(0.5, pause * 2)

    # -- the outcome ----------------------------------------------------------------------

    def collect(self, entry: dict[str, Any]) -> list[Image.Image]:
        """The outputs of a successful prompt (its saved pictures, else its previews), at
        the size asked; a failed or interrupted one's error."""
        failure = outcome_error(entry, self.prompt_id, self.client.backend.name)
        if failure is not None:
            raise failure
        outputs = entry.get("outputs")
        outputs = outputs if isinstance(outputs, dict) else {}
        images = workflows.each_image(outputs, lambda i: i.get("type") == "output")
        images = images or workflows.each_image(outputs, lambda i: True)
        if not images:
            raise PermanentProviderError(f"{API_ERROR}: the workflow finished without a picture")
        self.task.output.update({"prompt_id": self.prompt_id, "server": self.client.backend.name})
        if "seed" in self.task.params:
            self.task.output["seed"] = self.task.params["seed"]
        sent = (self.task.params.get("width"), self.task.params.get("height"))
        exact = parse_size(self.task.params.get(RESIZE_KEY))
        pictures = []
        for image in images:
            picture = decode_picture(self.client.view(image), "an output")
            # Only a picture of the size sent is cropped to the size asked: a workflow that
            # upscales (or ignores the size) keeps its own.
            pictures.append(cover_fit(picture, exact) if picture.size == sent else picture)
        return pictures


def outcome_error(
    entry: dict[str, Any], prompt_id: str | None, server: str
) -> ProviderError | None:
    """The error of a history entry that did not end in success (None for success)."""
    status = entry.get("status")
    status = status if isinstance(status, dict) else {}
    if status.get("status_str", "success") == "success" and status.get("completed", True):
        return None
    details: dict[str, Any] = {"prompt_id": prompt_id, "server": server}
    for kind, data in status.get("messages") or []:
        if not isinstance(data, dict):
            continue
        if kind == "execution_interrupted":
            return PermanentProviderError(
                f"{API_ERROR}: the prompt was interrupted on the server", details=details
            )
        if kind == "execution_error":
            node = f"{data.get('node_type', '?')} node {data.get('node_id', '?')}"
            message = " ".join(str(data.get("exception_message") or "failed").split())
            text = f"{API_ERROR}: {node}: {message}"[:MAX_DETAIL]
            details["exception_type"] = str(data.get("exception_type") or "")
            if any(mark in details["exception_type"] for mark in OUT_OF_MEMORY):
                return TransientProviderError(text, details=details)  # another time, it fits
            return PermanentProviderError(text, details=details)
    return PermanentProviderError(f"{API_ERROR}: the prompt failed", details=details)
