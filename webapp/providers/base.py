"""The provider interface: model definitions, generation tasks and provider errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
OUTPUT_FORMATS = ("png", "jpg", "webp")
MAX_SEED = 2_147_483_647  # seeds are 32-bit signed for most models
PROMPT_STRENGTH = "prompt_strength"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a model accepts, with its type, bounds and default."""

    name: str
    type: str  # "integer" | "number" | "string" | "enum" | "boolean"
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Describe the parameter for `/models` and the browser form."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class ModelSpec:
    """A model in the registry: who runs it and which parameters it takes."""

    id: str
    provider: str
    label: str
    description: str
    params: tuple[ParamSpec, ...]
    # Longest side of the picture the model renders when only an aspect ratio is asked.
    base_size: int = 1024
    # Seconds a run takes before any history exists, for the first estimates.
    typical_seconds: float = 10.0
    offline: bool = False
    # The pictures it takes as inputs, by role ("image", "mask"); a job that sends one it
    # does not take is refused (422), never run without it.
    inputs: tuple[str, ...] = ()
    # The pictures it cannot run without (a user workflow that loads an image): a job that
    # lacks one is refused (422) at once.
    required_inputs: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # Turns the resolved parameters into what the provider is sent (its own input names and
    # sizes), appending warnings; called with (resolved, requested, warnings). None: as is.
    adapt: Callable[[dict[str, Any], dict[str, Any], list[str]], dict[str, Any]] | None = field(
        default=None, compare=False, repr=False
    )

    def param(self, name: str) -> ParamSpec | None:
        """Return the parameter definition by name, if the model has it."""
        return next((p for p in self.params if p.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """Describe the model for `/models`."""
        return {
            "id": self.id,
            "provider": self.provider,
            "label": self.label,
            "description": self.description,
            "offline": self.offline,
            "inputs": list(self.inputs),
            "required_inputs": list(self.required_inputs),
            "parameters": [p.as_dict() for p in self.params],
        }


class LeaseLost(Exception):
    """The job was cancelled or taken over by another worker; stop working on it."""


class ProviderError(Exception):
    """A generation failed at the provider."""

    transient = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class TransientProviderError(ProviderError):
    """A failure worth retrying: network trouble, timeouts, 429 and 5xx answers."""

    transient = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """A failure that a retry would only repeat: bad input, unknown model, refused request."""


@dataclass
class GenerationTask:
    """What a provider needs to run one attempt of a job."""

    job_id: str
    model: ModelSpec
    prompt: str
    params: dict[str, Any]
    report_progress: Callable[[float], None]
    remember_provider_job_id: Callable[[str], None]
    provider_job_id: str | None = None
    # The input pictures by role (`webapp.inputs.InputPicture`: bytes, type, size).
    inputs: dict[str, Any] = field(default_factory=dict)
    # The server this attempt runs on, for providers with several (`backends.Backend`).
    backend: Any = None
    # Shows a running job's latest preview picture in the browser (at most once a second).
    report_preview: Callable[[Image.Image], None] = lambda image: None
    # What the provider reports about the run, kept on the job as `provider_output`
    # (OpenAI's revised prompt and token usage, the seed a server really used).
    output: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """What every provider module offers.

    A provider with several servers (`uses_backends`) also has `probe(backend)`, which reads
    a server's models (`backends.Probed`) or raises; its models carry the name the server
    knows them by in `extra["backend_model"]`, and `generate` runs on `task.backend`.
    """

    name: str
    uses_backends: bool

    def models(self) -> list[ModelSpec]:
        """The models this provider can run with the current configuration."""
        ...

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Run one attempt and return the output images, reporting progress as it goes."""
        ...

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """Ask the provider to stop a run it started (on `backend`, for providers with
        several servers)."""
        ...
