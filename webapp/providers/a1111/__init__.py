"""The `a1111` provider: AUTOMATIC1111 / Forge servers (`DARKROOM_A1111_URLS`).

TODO(issue 15): everything; this stub offers no models.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from webapp.providers.backends import Backend, Probed
from webapp.providers.base import GenerationTask, ModelSpec, PermanentProviderError


class A1111Provider:
    """Runs checkpoints of AUTOMATIC1111 / Forge servers, spread over several servers."""

    name = "a1111"
    uses_backends = True

    def models(self) -> list[ModelSpec]:
        """One model `a1111/<model_name>` per checkpoint a healthy server offers."""
        return []

    def probe(self, backend: Backend) -> Probed:
        """Read a server's checkpoints, samplers and schedulers; raise if it does not answer."""
        raise PermanentProviderError("not built yet")

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Run txt2img or img2img on `task.backend`."""
        raise PermanentProviderError("not built yet")

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """Interrupt the server, only when our job is the one running there."""
