"""The `openai` provider: OpenAI's image models (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).

TODO(issue 15): everything; this stub offers no models.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from webapp.providers.base import GenerationTask, ModelSpec, PermanentProviderError


class OpenAIProvider:
    """Runs gpt-image-1 and dall-e-3 when `OPENAI_API_KEY` is configured."""

    name = "openai"
    uses_backends = False

    def models(self) -> list[ModelSpec]:
        """The OpenAI models, or none without a key."""
        return []

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Generate (or edit, with input pictures) and return the pictures."""
        raise PermanentProviderError("not built yet")

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """OpenAI's image calls cannot be cancelled; the attempt is abandoned."""
