"""The `openai` provider: OpenAI's image models (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).

One attempt is one request: `POST /images/generations`, or `/images/edits` (multipart)
when the job has an input picture. OpenAI answers only once the pictures are done, in
base64 or as links that are downloaded at once; they are cover-resized to an exact size
the model could not render. Nothing upstream can be resumed or cancelled: a retry, or a
worker that died mid-request, pays for the pictures again. `OPENAI_BASE_URL` points the
same calls at an OpenAI-compatible server (LocalAI, a proxy).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from PIL import Image

from webapp.providers.base import GenerationTask, ModelSpec, PermanentProviderError
from webapp.providers.openai.client import API_ERROR, OpenAIClient, Settings
from webapp.providers.openai.models import MODELS, request_fields
from webapp.providers.openai.pictures import edit_files, pictures_of, report_of
from webapp.providers.pictures import RESIZE_KEY, cover_fit, parse_size

log = logging.getLogger(__name__)

# There is no progress upstream: a step once the request leaves, the rest when it is back.
SENT, ANSWERED = 0.05, 0.9


class OpenAIProvider:
    """Runs gpt-image-1 and dall-e-3 when `OPENAI_API_KEY` is configured."""

    name = "openai"
    uses_backends = False

    def models(self) -> list[ModelSpec]:
        """The OpenAI models, or none without a key."""
        return list(MODELS) if current_app.config.get("OPENAI_API_KEY") else []

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Generate (or edit, with input pictures) and return the pictures."""
        settings = Settings.from_config(current_app.config)
        fields = {"model": task.model.id, "prompt": task.prompt}
        fields.update(request_fields(task.model.id, task.params))
        edit = "image" in task.inputs
        if edit and "image" not in task.model.inputs:
            raise PermanentProviderError(f"{API_ERROR}: {task.model.id} cannot edit a picture")
        # report_progress raises LeaseLost for a cancelled job: checked before paying.
        task.report_progress(SENT)
        with OpenAIClient(settings) as client:
            if edit:
                answer = client.edit(fields, edit_files(task.inputs))
            else:
                answer = client.generate(fields)
            log.info(
                "job %s: %s answered (request %s)", task.job_id, task.model.id, answer.request_id
            )
            task.report_progress(ANSWERED)
            pictures = pictures_of(answer.body, client)
        task.output.update(report_of(answer.body, answer.request_id))
        task.report_progress(1.0)
        size = parse_size(task.params.get(RESIZE_KEY))
        return [cover_fit(picture, size) for picture in pictures]

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """OpenAI's image calls cannot be cancelled; the attempt is abandoned."""
