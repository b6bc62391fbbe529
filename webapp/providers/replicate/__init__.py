"""The `replicate` provider: real models through Replicate's HTTP API.

One attempt creates a prediction (or resumes the one an earlier attempt created, whose id
the job kept), follows it to the end reporting progress from its logs, downloads the
outputs at once (Replicate deletes them after an hour) and cover-crops them to an exact
size when the model could not render it. A cancelled job's prediction is cancelled too.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from typing import Any

from flask import current_app
from PIL import Image

from webapp.providers.base import (
    GenerationTask,
    LeaseLost,
    ModelSpec,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from webapp.providers.pictures import RESIZE_KEY, cover_fit, parse_size
from webapp.providers.replicate.client import API_ERROR, Gone, ReplicateClient, Settings
from webapp.providers.replicate.models import INPUT_KEYS, MODELS, ROUTES
from webapp.providers.replicate.outputs import decode_image, output_urls, parse_progress

log = logging.getLogger(__name__)

RUNNING = ("starting", "processing")
MAX_ERROR = 500


class ReplicateProvider:
    """Runs the Replicate models when `REPLICATE_API_TOKEN` is configured."""

    name = "replicate"
    uses_backends = False

    def models(self) -> list[ModelSpec]:
        """The Replicate models, or none without a token."""
        return list(MODELS) if current_app.config.get("REPLICATE_API_TOKEN") else []

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Run (or resume) the job's prediction and return its outputs at the size asked."""
        settings = Settings.from_config(current_app.config)
        with ReplicateClient(settings) as client:
            attempt = _Attempt(client, task)
            try:
                images = attempt.run()
            except LeaseLost:
                # The job was cancelled, or another worker took it over after we stalled. A
                # committed prediction is left alone: a new owner may be following it, and
                # a cancelled job's prediction is cancelled by the `cancel_upstream` task
                # the cancel queued. One whose id never got committed has only us to stop it.
                if attempt.prediction_id and not attempt.committed:
                    client.cancel_quietly(attempt.prediction_id)
                raise
        size = parse_size(task.params.get(RESIZE_KEY))
        return [cover_fit(image, size) for image in images]

    def cancel(self, provider_job_id: str, backend: object = None) -> None:
        """Cancel a prediction (the job was cancelled); failures are logged, not raised."""
        try:
            settings = Settings.from_config(current_app.config)
        except ProviderError as exc:
            log.warning("cannot cancel replicate prediction %s: %s", provider_job_id, exc)
            return
        with ReplicateClient(settings) as client:
            client.cancel_quietly(provider_job_id)


class _Attempt:
    """One attempt of one job: the prediction it follows and how it got there."""

    def __init__(self, client: ReplicateClient, task: GenerationTask) -> None:
        self.client, self.task = client, task
        self.settings = client.settings
        self.prediction_id: str | None = None
        self.committed = False  # the job holds prediction_id, so a later attempt can resume
        self.progress = 0.0

    def run(self) -> list[Image.Image]:
        prediction = self.resume() if self.task.provider_job_id else None
        resumed = prediction is not None
        if prediction is None:
            prediction = self.create()
        try:
            return self.collect(self.follow(prediction))
        except Gone:
            if not resumed:
                raise
            # An earlier attempt's prediction whose files expired meanwhile: run it again.
            log.info("outputs of prediction %s expired; creating a new one", self.prediction_id)
            return self.collect(self.follow(self.create()))

    def resume(self) -> dict[str, Any] | None:
        """The earlier attempt's prediction, unless it is gone, expired or was cancelled."""
        prediction_id = str(self.task.provider_job_id)
        try:
            prediction = self.client.get(prediction_id)
        except Gone:
            log.info("prediction %s of job %s is gone", prediction_id, self.task.job_id)
            return None
        if prediction.get("status") == "canceled" or prediction.get("data_removed"):
            log.info("prediction %s of job %s cannot be resumed", prediction_id, self.task.job_id)
            return None
        self.prediction_id, self.committed = prediction_id, True
        log.info("job %s resumes prediction %s", self.task.job_id, prediction_id)
        return prediction

    def create(self) -> dict[str, Any]:
        """Start a prediction and commit its id before anything else can go wrong."""
        params = {k: v for k, v in self.task.params.items() if k != RESIZE_KEY}
        model_input = {"prompt": self.task.prompt, **params}
        for role, key in INPUT_KEYS.get(self.task.model.id, {}).items():
            picture = self.task.inputs.get(role)
            if picture is not None:  # the job keeps the upload's id there; send the bytes
                extension = mimetypes.guess_extension(picture.mime_type) or ""
                name = f"{role}-{picture.upload_id}{extension}"
                model_input[key] = self.client.file_reference(picture.data, picture.mime_type, name)
        prediction = self.client.create(ROUTES[self.task.model.id], model_input)
        prediction_id = prediction.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise TransientProviderError(f"{API_ERROR}: the new prediction has no id")
        self.prediction_id, self.committed = prediction_id, False
        log.info("job %s created prediction %s", self.task.job_id, prediction_id)
        self.task.remember_provider_job_id(prediction_id)  # LeaseLost if the job is gone
        self.committed = True
        return prediction

    def follow(self, prediction: dict[str, Any]) -> dict[str, Any]:
        """Poll until the prediction ends, reporting progress; return it once it succeeded."""
        assert self.prediction_id is not None
        deadline = time.monotonic() + self.settings.deadline_seconds
        while True:
            status = prediction.get("status")
            fraction = parse_progress(prediction.get("logs"))
            if fraction is not None:
                self.progress = max(self.progress, fraction)  # a second bar starts at 0%
            if status == "succeeded":
                return prediction
            if status not in RUNNING:
                raise self.ended_badly(prediction)
            self.task.report_progress(self.progress)  # raises LeaseLost once cancelled
            if time.monotonic() > deadline:
                self.client.cancel_quietly(self.prediction_id)
                raise TransientProviderError(
                    f"{API_ERROR}: the prediction did not finish within "
                    f"{self.settings.deadline_seconds:g} s",
                    details={"prediction_id": self.prediction_id},
                )
            time.sleep(self.settings.poll_seconds)
            prediction = self.client.get(self.prediction_id)

    def ended_badly(self, prediction: dict[str, Any]) -> ProviderError:
        """The error for a prediction that failed or was cancelled upstream."""
        status = prediction.get("status")
        details = {"prediction_id": self.prediction_id, "prediction_status": status}
        if status == "failed":
            reason = " ".join(str(prediction.get("error") or "the prediction failed").split())
            return PermanentProviderError(f"{API_ERROR}: {reason[:MAX_ERROR]}", details=details)
        if status == "canceled":
            return PermanentProviderError(
                f"{API_ERROR}: the prediction was canceled upstream", details=details
            )
        return PermanentProviderError(
            f"{API_ERROR}: unexpected prediction status {str(status)[:40]!r}", details=details
        )

    def collect(self, prediction: dict[str, Any]) -> list[Image.Image]:
        """Download and decode every output now: the files expire upstream."""
        if prediction.get("data_removed"):
            raise Gone(f"{API_ERROR}: the prediction's outputs were already removed")
        return [
            decode_image(self.client.download(url), self.settings.max_pixels)
            for url in output_urls(prediction.get("output"))
        ]
