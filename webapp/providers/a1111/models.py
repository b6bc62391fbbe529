"""The models of AUTOMATIC1111 / Forge servers: one per checkpoint, with the samplers and
schedulers the servers offer as choices, and how our parameters map onto the API's.

Users speak the guide's parameter names (`num_inference_steps`, `guidance_scale`, ...)
plus `sampler`, `scheduler`, `mask_blur` and `inpainting_fill`; `adapt` turns them into the
API's names and values, which is what the job stores as its provider parameters. Three of
its keys are ours and not sent: `output_format` and `output_quality` (how the worker stores
the pictures) and `resize_to` (the exact size asked, when the server renders it in 8-pixel
blocks).
"""

from __future__ import annotations

import re
from typing import Any, cast

from sqlalchemy import String

from webapp.models import Job
from webapp.providers.base import (
    ASPECT_RATIOS,
    MAX_SEED,
    OUTPUT_FORMATS,
    ModelSpec,
    ParamSpec,
)
from webapp.providers.pictures import RESIZE_KEY

PREFIX = "a1111/"
MAX_ID = cast(String, Job.__table__.c.model.type).length or 64
"""A model id must fit the jobs' `model` column."""
BLOCK = 8  # Stable Diffusion works on 8-pixel latent blocks; A1111 truncates other sizes
NOT_SENT = ("output_format", "output_quality", RESIZE_KEY)
"""Keys of the provider parameters that are ours, not the API's."""
INPAINTING_FILL = {"fill": 0, "original": 1, "latent_noise": 2, "latent_nothing": 3}
"""What a masked area starts from, by the API's numbers (A1111's "Masked content")."""
PREFERRED_SAMPLERS = ("DPM++ 2M", "Euler a", "Euler")
LARGE = re.compile(r"xl|flux|sd3|pony|illustrious|noob", re.IGNORECASE)
"""Checkpoint names that say they were trained at 1024 pixels (SDXL and later)."""


def checkpoint_entry(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """What a probe keeps of one `/sdapi/v1/sd-models` item (None for one unusable here):
    `name` is its `model_name`, our model id's tail; `title` is what a run asks for."""
    name, title = checkpoint.get("model_name"), checkpoint.get("title")
    if not isinstance(name, str) or not name or len(PREFIX + name) > MAX_ID:
        return None
    return {
        "name": name,
        "title": title if isinstance(title, str) and title else name,
        "hash": checkpoint.get("hash") if isinstance(checkpoint.get("hash"), str) else None,
    }


def base_size(name: str) -> int:
    """The side a checkpoint renders best: 1024 for SDXL-era names, else 512 (SD 1.x)."""
    return 1024 if LARGE.search(name) else 512


def model_spec(
    checkpoint: dict[str, Any], samplers: tuple[str, ...], schedulers: tuple[str, ...]
) -> ModelSpec:
    """The model of one checkpoint, given the samplers and schedulers the servers offer."""
    name = str(checkpoint["name"])
    size = base_size(name)
    return ModelSpec(
        id=PREFIX + name,
        provider="a1111",
        label=name,
        description=f"Checkpoint {checkpoint['title']} on AUTOMATIC1111 / Forge servers.",
        params=params(size, samplers, schedulers),
        base_size=size,
        typical_seconds=5.0 if size == 512 else 15.0,
        inputs=("image", "mask"),  # img2img, and inpainting where the mask is white
        extra={"backend_model": name},
        adapt=adapt,
    )


def params(
    size: int, samplers: tuple[str, ...], schedulers: tuple[str, ...]
) -> tuple[ParamSpec, ...]:
    """A checkpoint's parameters; `sampler` and `scheduler` choose among the servers' own."""
    what = "sent in 8-pixel blocks, then resized"
    found: list[ParamSpec] = [
        ParamSpec("width", "integer", size, 128, 2048, description=f"Width in pixels; {what}"),
        ParamSpec("height", "integer", size, 128, 2048, description=f"Height in pixels; {what}"),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
        ParamSpec("num_inference_steps", "integer", 20, 1, 150, description="Sent as `steps`"),
        ParamSpec("guidance_scale", "number", 7.0, 1, 30, description="Sent as `cfg_scale`"),
        ParamSpec("negative_prompt", "string", "", description="What to keep out of the picture"),
        ParamSpec("seed", "integer", None, 0, MAX_SEED, description="Random if empty"),
        ParamSpec("num_outputs", "integer", 1, 1, 4, description="Sent as `batch_size`"),
        ParamSpec("output_format", "enum", "png", choices=OUTPUT_FORMATS),
        ParamSpec("output_quality", "integer", 90, 1, 100, description="JPEG/WebP quality"),
    ]
    if samplers:
        default = next((s for s in PREFERRED_SAMPLERS if s in samplers), samplers[0])
        found.append(
            ParamSpec("sampler", "enum", default, choices=samplers, description="`sampler_name`")
        )
    if schedulers:
        default = "automatic" if "automatic" in schedulers else schedulers[0]
        found.append(ParamSpec("scheduler", "enum", default, choices=schedulers))
    found += [
        ParamSpec(
            "prompt_strength",
            "number",
            0.75,
            0,
            1,
            description="With an image: how far to move from it (`denoising_strength`)",
        ),
        ParamSpec("mask_blur", "integer", 4, 0, 64, description="With a mask: pixels of soft edge"),
        ParamSpec(
            "inpainting_fill",
            "enum",
            "original",
            choices=tuple(INPAINTING_FILL),
            description="With a mask: what the repainted area starts from",
        ),
    ]
    return tuple(found)


def adapt(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as the body of `/sdapi/v1/txt2img` or `img2img` (without the prompt,
    checkpoint and pictures, which the run adds)."""
    width, height = resolved["width"], resolved["height"]
    sent: dict[str, Any] = {
        "width": _block(width),
        "height": _block(height),
        "steps": resolved["num_inference_steps"],
        "cfg_scale": resolved["guidance_scale"],
        "negative_prompt": resolved.get("negative_prompt") or "",
        "seed": -1 if resolved.get("seed") is None else resolved["seed"],  # -1: the server's
        "batch_size": resolved["num_outputs"],
        "output_format": resolved["output_format"],
        "output_quality": resolved["output_quality"],
    }
    if (sent["width"], sent["height"]) != (width, height):
        sent[RESIZE_KEY] = f"{width}x{height}"
    if resolved.get("sampler"):
        sent["sampler_name"] = resolved["sampler"]
    if resolved.get("scheduler"):
        sent["scheduler"] = resolved["scheduler"]
    if resolved.get("image"):
        # The upload ids stand where the pictures go; the run sends their bytes.
        sent["init_images"] = [resolved["image"]]
        sent["denoising_strength"] = resolved["prompt_strength"]
        sent["resize_mode"] = 1  # "Crop and resize": cover the size asked, no stretching
        if resolved.get("mask"):
            sent["mask"] = resolved["mask"]
            sent["mask_blur"] = resolved["mask_blur"]
            sent["inpainting_fill"] = INPAINTING_FILL[resolved["inpainting_fill"]]
            sent["inpaint_full_res"] = False  # repaint within the whole picture
            sent["inpainting_mask_invert"] = 0  # white is repainted, as our masks mean
    return sent


def _block(side: int) -> int:
    return max(BLOCK, round(side / BLOCK) * BLOCK)
