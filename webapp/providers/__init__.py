"""The model registry: which models exist, and which provider runs each.

Adding a provider is adding a module with a `Provider` class and listing it here.
"""

from __future__ import annotations

from flask import current_app

from webapp.providers import backends
from webapp.providers.a1111 import A1111Provider
from webapp.providers.base import ModelSpec, Provider
from webapp.providers.comfyui import ComfyUIProvider
from webapp.providers.demo import DemoProvider
from webapp.providers.openai import OpenAIProvider
from webapp.providers.replicate import ReplicateProvider

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        DemoProvider(),
        ReplicateProvider(),
        OpenAIProvider(),
        A1111Provider(),
        ComfyUIProvider(),
    )
}


def available_models() -> dict[str, ModelSpec]:
    """Every model the current configuration can run, by id, default first."""
    models = {spec.id: spec for p in PROVIDERS.values() for spec in p.models()}
    default = default_model_id(models)
    return {default: models[default], **models} if default in models else models


def default_model_id(models: dict[str, ModelSpec] | None = None) -> str:
    """`DARKROOM_DEFAULT_MODEL`, else flux-schnell with a Replicate token, else demo."""
    configured = current_app.config.get("DEFAULT_MODEL")
    if configured:
        return str(configured)
    if current_app.config.get("REPLICATE_API_TOKEN"):
        models = models if models is not None else available_models()
        if "flux-schnell" in models:
            return "flux-schnell"
    return "demo"


def get_model(model_id: str) -> ModelSpec | None:
    """Look a model up by id among the available ones."""
    return available_models().get(model_id)


def provider_for(spec: ModelSpec) -> Provider:
    """The provider that runs a model."""
    return PROVIDERS[spec.provider]


def probe_all_providers() -> None:
    """Probe every server of the providers that have several (`webapp.providers.backends`)."""
    for provider in PROVIDERS.values():
        if provider.uses_backends and backends.configured(provider.name):
            backends.probe_all(provider.name, provider.probe)  # type: ignore[attr-defined]
