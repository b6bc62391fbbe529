"""The `comfyui` provider: ComfyUI servers (`DARKROOM_COMFYUI_URLS`).

TODO(issue 15): everything; this stub offers no models.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from webapp.providers.backends import Backend, Probed
from webapp.providers.base import GenerationTask, ModelSpec, PermanentProviderError


class ComfyUIProvider:
    """Runs built-in and user workflows on ComfyUI servers, spread over several servers."""

    name = "comfyui"
    uses_backends = True

    def models(self) -> list[ModelSpec]:
        """Built-in workflows per checkpoint and `comfyui/<file>` per user workflow."""
        return []

    def probe(self, backend: Backend) -> Probed:
        """Read a server's /object_info; raise if it does not answer."""
        raise PermanentProviderError("not built yet")

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Queue the workflow on `task.backend` and follow it."""
        raise PermanentProviderError("not built yet")

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """Interrupt the prompt, or take it off the queue."""
