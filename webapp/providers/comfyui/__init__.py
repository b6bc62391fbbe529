"""The `comfyui` provider: ComfyUI servers (`DARKROOM_COMFYUI_URLS`, docs/comfyui.md).

Its models are the checkpoints the servers offer, each run through the built-in txt2img /
img2img / inpaint workflow (`comfyui/<checkpoint>`), and the user's workflow files in
`<instance>/workflows/` (`comfyui/<file name>`). A server offers a checkpoint when its
`/object_info` lists it, and a user workflow when it has every node type, model file and
choice the workflow names (so a job goes only to a server that can run it). Jobs are spread
over the servers by `webapp.providers.backends`; one attempt is `run.Attempt`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from PIL import Image

from webapp.providers import backends
from webapp.providers.backends import Backend, Probed
from webapp.providers.base import GenerationTask, LeaseLost, ModelSpec, PermanentProviderError
from webapp.providers.comfyui import workflows
from webapp.providers.comfyui.client import ComfyUIClient, Settings
from webapp.providers.comfyui.models import (
    DEFAULT_SAMPLERS,
    DEFAULT_SCHEDULERS,
    PROVIDER,
    checkpoint_model,
    workflow_model,
)
from webapp.providers.comfyui.run import Attempt

log = logging.getLogger(__name__)


class ComfyUIProvider:
    """Runs built-in and user workflows on ComfyUI servers, spread over several servers."""

    name = PROVIDER
    uses_backends = True

    def models(self) -> list[ModelSpec]:
        """Built-in workflows per checkpoint and `comfyui/<file>` per user workflow, each
        while a healthy server offers it."""
        if not backends.configured(self.name):
            return []
        offered = backends.offered_models(self.name, self.probe)
        samplers, schedulers = _choices(backends.states(self.name))
        specs: dict[str, ModelSpec] = {}
        for name, model in offered.items():
            if model.get("kind") == "checkpoint":
                spec = checkpoint_model(name, samplers, schedulers)
                specs.setdefault(spec.id, spec)
        for workflow in workflows.user_workflows(current_app.instance_path):
            if workflow.backend_model in offered:  # the user's file wins over a checkpoint
                spec = workflow_model(workflow, samplers, schedulers)
                specs[spec.id] = spec
        return list(specs.values())

    def probe(self, backend: Backend) -> Probed:
        """Read a server's /object_info: its checkpoints, samplers and schedulers, and which
        user workflows it can run; raise if it does not answer."""
        with ComfyUIClient(backend, Settings.from_config(current_app.config)) as client:
            info = client.object_info()
        checkpoints = workflows.choices(info, "CheckpointLoaderSimple", "ckpt_name") or []
        if checkpoints and workflows.unmet_need(workflows.builtin(checkpoints[0], "txt2img"), info):
            checkpoints = []  # a server without the core nodes runs no built-in workflow
        models: list[dict[str, Any]] = [{"name": c, "kind": "checkpoint"} for c in checkpoints]
        unmet = {}
        for workflow in workflows.user_workflows(current_app.instance_path):
            problem = workflows.unmet_need(workflow.graph, info)
            if problem is None:
                models.append({"name": workflow.backend_model, "kind": "workflow"})
            else:
                unmet[workflow.name] = problem
        _log_new_problems(backend, unmet)
        return Probed(
            models,
            {
                "samplers": workflows.choices(info, "KSampler", "sampler_name") or [],
                "schedulers": workflows.choices(info, "KSampler", "scheduler") or [],
                "unmet": unmet,
            },
        )

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Queue the workflow on `task.backend` and follow it."""
        if task.backend is None:
            raise PermanentProviderError("ComfyUI error: no server was chosen for the job")
        with ComfyUIClient(task.backend, Settings.from_config(current_app.config)) as client:
            attempt = Attempt(client, task)
            try:
                return attempt.run()
            except LeaseLost:
                # The job was cancelled or taken over. A committed prompt is left alone: a
                # cancel's `cancel_upstream` stops it, a new owner may follow it. One whose
                # id never got committed has only us to stop it.
                if attempt.prompt_id and not attempt.committed:
                    client.stop_quietly(attempt.prompt_id)
                raise

    def cancel(self, provider_job_id: str, backend: Any = None) -> None:
        """Interrupt the prompt when it runs, or take it off the queue when it waits (on the
        server the job ran on); failures are logged, not raised."""
        if not isinstance(backend, Backend):
            log.warning("cannot stop comfyui prompt %s: its server is unknown", provider_job_id)
            return
        with ComfyUIClient(backend, Settings.from_config(current_app.config)) as client:
            client.stop_quietly(provider_job_id)


def _choices(states: list[backends.State]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The samplers and schedulers every healthy server offers (in the first one's order)."""
    found: list[tuple[str, ...]] = []
    for key, fallback in (("samplers", DEFAULT_SAMPLERS), ("schedulers", DEFAULT_SCHEDULERS)):
        lists: list[list[str]] = [s.info[key] for s in states if s.up and s.info.get(key)]
        common = [c for c in lists[0] if all(c in other for other in lists[1:])] if lists else []
        found.append(tuple(str(c) for c in common) or fallback)
    return found[0], found[1]


def _log_new_problems(backend: Backend, unmet: dict[str, str]) -> None:
    """Say why a server cannot run a user workflow, once (not at every probe)."""
    before: dict[str, str] = {}
    for state in backends.states(backend.provider):
        if state.backend == backend:
            before = dict(state.info.get("unmet") or {})
    for name, problem in unmet.items():
        if before.get(name) != problem:
            log.warning("%s cannot run workflow %s: %s", backend.name, name, problem)
