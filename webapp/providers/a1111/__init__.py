"""The `a1111` provider: AUTOMATIC1111 / Forge servers (`DARKROOM_A1111_URLS`).

Each checkpoint a healthy server offers is a model `a1111/<model_name>`; its `sampler` and
`scheduler` choose among those the healthy servers offer. A job runs txt2img, or img2img
with an input picture (inpainting with a mask), on the server `webapp.runs` chose for it
(`task.backend`), with the checkpoint named in `override_settings`. How one run is followed
(progress, previews, cancels) is `attempt.py`; the API calls are `client.py`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from PIL import Image

from webapp.providers.a1111.attempt import Attempt
from webapp.providers.a1111.client import A1111Client, Settings
from webapp.providers.a1111.models import checkpoint_entry, model_spec
from webapp.providers.backends import Backend, Probed, State, configured, offered_models, states
from webapp.providers.base import GenerationTask, ModelSpec, PermanentProviderError, ProviderError

log = logging.getLogger(__name__)


class A1111Provider:
    """Runs checkpoints of AUTOMATIC1111 / Forge servers, spread over several servers."""

    name = "a1111"
    uses_backends = True

    def models(self) -> list[ModelSpec]:
        """One model `a1111/<model_name>` per checkpoint a healthy server offers."""
        if not configured(self.name):
            return []
        offered = offered_models(self.name, self.probe)
        samplers, schedulers = choices(states(self.name))
        return [model_spec(model, samplers, schedulers) for model in offered.values()]

    def probe(self, backend: Backend) -> Probed:
        """Read a server's checkpoints, samplers and schedulers; raise if it does not answer."""
        with A1111Client(backend, Settings.from_config(current_app.config)) as client:
            checkpoints = client.checkpoints()
            samplers = client.samplers()
            schedulers = client.schedulers()
        models = [entry for c in checkpoints if (entry := checkpoint_entry(c)) is not None]
        if len(models) < len(checkpoints):
            log.info(
                "%d checkpoint(s) of %s have no name or one too long for a model id",
                len(checkpoints) - len(models),
                backend.name,
            )
        return Probed(models, {"samplers": _names(samplers), "schedulers": _names(schedulers)})

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Run txt2img or img2img on `task.backend`."""
        if not isinstance(task.backend, Backend):
            raise PermanentProviderError("No AUTOMATIC1111 server was chosen for the job")
        return Attempt(task, Settings.from_config(current_app.config)).run()

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """Interrupt the server, only when our job is the one running there; failures are
        logged, not raised."""
        if not isinstance(backend, Backend):
            log.info("%s: its server is no longer configured", provider_job_id)
            return
        try:
            with A1111Client(backend, Settings.from_config(current_app.config)) as client:
                stopped = client.interrupt_if_running(provider_job_id)
        except ProviderError as exc:
            log.warning("could not interrupt %s on %s: %s", provider_job_id, backend.name, exc)
            return
        if stopped:
            log.info("interrupted %s on %s", provider_job_id, backend.name)
        else:
            log.info("%s is not running on %s; nothing interrupted", provider_job_id, backend.name)


def choices(found: list[State]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The samplers and schedulers the healthy servers offer (all of them, in the order the
    first server that has each lists them)."""
    samplers: dict[str, None] = {}
    schedulers: dict[str, None] = {}
    for state in found:
        if state.up:
            samplers.update(dict.fromkeys(str(s) for s in state.info.get("samplers") or ()))
            schedulers.update(dict.fromkeys(str(s) for s in state.info.get("schedulers") or ()))
    return tuple(samplers), tuple(schedulers)


def _names(items: list[dict[str, Any]] | None) -> list[str]:
    return [str(item["name"]) for item in items or () if isinstance(item.get("name"), str)]
