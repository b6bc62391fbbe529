"""The ComfyUI models: one per checkpoint the servers offer (the built-in workflows) and one
per user workflow file, with the parameters each takes and how ours map onto them.

A job's provider parameters are the placeholder values of its workflow (`width`, `seed`,
`num_inference_steps`, ... named as the guide names them), with the size in 8-pixel blocks;
`resize_to` ("WxH") asks for the outputs to be cover-cropped to the exact size asked.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from webapp.providers.base import ASPECT_RATIOS, MAX_SEED, OUTPUT_FORMATS, ModelSpec, ParamSpec
from webapp.providers.comfyui.workflows import Workflow
from webapp.providers.pictures import RESIZE_KEY

PROVIDER = "comfyui"
MAX_ID = 64  # what `POST /jobs/generate` accepts as a model id
DEFAULT_SAMPLERS = ("euler",)
DEFAULT_SCHEDULERS = ("normal",)
# SD 1.x / 2.x checkpoints render best at 512 pixels; the rest (SDXL, SD3, FLUX...) at 1024.
# Only the name tells them apart, so this is a guess: `width`/`height` always win.
_SMALL_CHECKPOINT = re.compile(r"(^|[^a-z0-9])(sd-?1|sd-?2|v1-|v2-|1[._-]5)", re.IGNORECASE)
_LARGE_CHECKPOINT = re.compile(r"xl|sd3|flux", re.IGNORECASE)


def model_id(name: str) -> str:
    """`comfyui/<name>`, shortened with a hash of the name when it would be too long."""
    candidate = f"{PROVIDER}/{name}"
    if len(candidate) <= MAX_ID:
        return candidate
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{candidate[: MAX_ID - 9]}-{digest}"


def checkpoint_stem(checkpoint: str) -> str:
    """A checkpoint's file name as `/object_info` lists it, without its extension and with
    forward slashes for its folders."""
    path = checkpoint.replace("\\", "/")
    folder, _, file = path.rpartition("/")
    stem = file.rsplit(".", 1)[0] if "." in file else file
    return f"{folder}/{stem}" if folder else stem


# -- parameters --------------------------------------------------------------------------


def _size_params(default: int) -> tuple[ParamSpec, ...]:
    what = "sent in 8-pixel blocks, the outputs cropped to the exact size"
    return (
        ParamSpec("width", "integer", default, 128, 2048, description=f"Width in pixels; {what}"),
        ParamSpec("height", "integer", default, 128, 2048, description=f"Height in pixels; {what}"),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
    )


def _param(
    name: str, default: Any, samplers: tuple[str, ...], schedulers: tuple[str, ...]
) -> ParamSpec | None:
    """The parameter a placeholder offers (None for those that are not parameters)."""
    if name == "seed":
        return ParamSpec("seed", "integer", default, 0, MAX_SEED, description="Random if empty")
    if name == "num_inference_steps":
        steps = 20 if default is None else default
        return ParamSpec(name, "integer", steps, 1, 150, description="Sampler steps")
    if name == "guidance_scale":
        cfg = 7.0 if default is None else default
        return ParamSpec(name, "number", cfg, 0, 30, description="Sent as the sampler's cfg")
    if name == "negative_prompt":
        text = "" if default is None else default
        return ParamSpec(name, "string", text, description="What to keep out of the picture")
    if name == "num_outputs":
        count = 1 if default is None else default
        return ParamSpec(name, "integer", count, 1, 4, description="Images per job (batch)")
    if name == "prompt_strength":
        strength = 0.8 if default is None else default
        return ParamSpec(
            name, "number", strength, 0, 1, description="With an image: the sampler's denoise"
        )
    if name in ("sampler_name", "scheduler"):
        offered = samplers if name == "sampler_name" else schedulers
        fallback = DEFAULT_SAMPLERS if name == "sampler_name" else DEFAULT_SCHEDULERS
        chosen = next((c for c in (default, fallback[0]) if c in offered), offered[0])
        return ParamSpec(name, "enum", chosen, choices=offered)
    return None


_OUTPUT = (
    ParamSpec("output_format", "enum", "png", choices=OUTPUT_FORMATS),
    ParamSpec("output_quality", "integer", 90, 1, 100, description="JPEG/WebP quality"),
)
_BUILTIN_PLACEHOLDERS = (
    "seed",
    "num_inference_steps",
    "guidance_scale",
    "negative_prompt",
    "sampler_name",
    "scheduler",
    "num_outputs",
    "prompt_strength",
)


def _params(
    placeholders: dict[str, Any],
    base_size: int,
    samplers: tuple[str, ...],
    schedulers: tuple[str, ...],
) -> tuple[ParamSpec, ...]:
    params: list[ParamSpec] = []
    if "width" in placeholders or "height" in placeholders:
        params += _size_params(base_size)
    for name, default in placeholders.items():
        spec = _param(name, default, samplers, schedulers)
        if spec is not None:
            params.append(spec)
    return (*params, *_OUTPUT)


# -- mapping -----------------------------------------------------------------------------


def _block(value: int) -> int:
    return max(8, round(value / 8) * 8)


def _sized(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved parameters as placeholder values: the size in 8-pixel blocks (and the
    exact size to crop to when that changed it), no aspect ratio, nothing empty."""
    sent = {k: v for k, v in resolved.items() if k != "aspect_ratio" and v is not None}
    if "width" in sent and "height" in sent:
        width, height = int(sent["width"]), int(sent["height"])
        sent["width"], sent["height"] = _block(width), _block(height)
        if (sent["width"], sent["height"]) != (width, height):
            sent[RESIZE_KEY] = f"{width}x{height}"
    return sent


def adapt_builtin(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as the built-in workflow's placeholder values (the strength only
    means something with an image)."""
    sent = _sized(resolved)
    if "image" not in sent:
        sent.pop("prompt_strength", None)
    return sent


def adapt_workflow(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as a user workflow's placeholder values (a job lacking a picture the
    workflow loads was refused before this: `required_inputs`)."""
    return _sized(resolved)


def needs_input(workflow: str, role: str) -> str:
    """What a job of a workflow is told when it lacks a picture the workflow takes."""
    what = "a mask" if role == "mask" else "an image"
    return f"The {model_id(workflow)} workflow needs {what}: send `{role}`"


# -- the models --------------------------------------------------------------------------


def checkpoint_model(
    checkpoint: str, samplers: tuple[str, ...], schedulers: tuple[str, ...]
) -> ModelSpec:
    """The built-in workflows (txt2img, img2img with `image`, inpainting with `mask` too)
    on one checkpoint."""
    stem = checkpoint_stem(checkpoint)
    small = _SMALL_CHECKPOINT.search(stem) and not _LARGE_CHECKPOINT.search(stem)
    base = 512 if small else 1024
    return ModelSpec(
        id=model_id(stem),
        provider=PROVIDER,
        label=f"{stem} (ComfyUI)",
        description=(
            f"The checkpoint {checkpoint} on ComfyUI: text to image, or from an image "
            "(img2img), or repainting a mask's white parts (inpainting)."
        ),
        params=_params(
            {"width": None, **dict.fromkeys(_BUILTIN_PLACEHOLDERS)}, base, samplers, schedulers
        ),
        base_size=base,
        typical_seconds=15.0,
        inputs=("image", "mask"),
        extra={"backend_model": checkpoint, "checkpoint": checkpoint},
        adapt=adapt_builtin,
    )


def workflow_model(
    workflow: Workflow, samplers: tuple[str, ...], schedulers: tuple[str, ...]
) -> ModelSpec:
    """A user workflow: the parameters its placeholders name, the pictures it takes."""
    return ModelSpec(
        id=model_id(workflow.name),
        provider=PROVIDER,
        label=f"{workflow.name} (ComfyUI workflow)",
        description=f"The workflow workflows/{workflow.name}.json on ComfyUI.",
        params=_params(workflow.placeholders, 1024, samplers, schedulers),
        typical_seconds=30.0,
        inputs=workflow.inputs,
        required_inputs=workflow.inputs,  # its placeholders must all be filled
        extra={"backend_model": workflow.backend_model, "workflow": workflow.name},
        adapt=adapt_workflow,
    )
