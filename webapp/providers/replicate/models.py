"""The Replicate models: their real inputs, defaults and limits, and how ours map onto them.

Users speak the guide's parameter names (`guidance_scale`, `width`, ...) plus each model's
own extras (`go_fast`, `scheduler`, ...). Each model's `adapt` turns the resolved parameters
into the exact `input` Replicate is sent, which is what the job stores as its provider
parameters. One key is ours, not Replicate's: `resize_to` ("WxH") asks the provider to
cover-crop the outputs to an exact size the model cannot render itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.providers.base import ASPECT_RATIOS, MAX_SEED, ModelSpec, ParamSpec
from webapp.providers.mapping import ratio_of
from webapp.providers.pictures import RESIZE_KEY

# What the FLUX.1 models render for each aspect ratio at one megapixel (16-pixel blocks).
FLUX_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
PRO_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
PRO_SIDE = (256, 1440)  # flux-1.1-pro's custom sizes: multiples of 32 within these bounds
SDXL_SCHEDULERS = (
    "DDIM",
    "DPMSolverMultistep",
    "HeunDiscrete",
    "KarrasDPM",
    "K_EULER_ANCESTRAL",
    "K_EULER",
    "PNDM",
)
SDXL_REFINERS = ("no_refiner", "expert_ensemble_refiner", "base_image_refiner")
SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
KONTEXT_IMAGE_TOLERANCE = 2


@dataclass(frozen=True)
class Route:
    """Where a model's predictions are created: an official model, or a pinned version."""

    model: str  # owner/name
    version: str | None = None


def flux_size(aspect_ratio: str, megapixels: str = "1") -> tuple[int, int]:
    """The size a FLUX.1 model renders for an aspect ratio and megapixel setting."""
    width, height = FLUX_SIZES[aspect_ratio]
    if megapixels == "0.25":
        width, height = _round_to(width / 2, 16), _round_to(height / 2, 16)
    return width, height


def nearest_ratio(width: int, height: int, ratios: tuple[str, ...] = ASPECT_RATIOS) -> str:
    """The aspect ratio among `ratios` closest to a width and height."""
    return min(ratios, key=lambda r: abs(ratio_of(r) - width / height))


def _round_to(value: float, step: int) -> int:
    return max(step, round(value / step) * step)


def _explicit_size(requested: dict[str, Any]) -> bool:
    return "width" in requested or "height" in requested


def _without(resolved: dict[str, Any], *names: str) -> dict[str, Any]:
    """The resolved parameters minus some, and minus empty ones (Replicate wants them unset)."""
    return {k: v for k, v in resolved.items() if k not in names and v is not None}


def _no_strength_without_image(sent: dict[str, Any]) -> dict[str, Any]:
    """`prompt_strength` only means something with an image; without one it is not sent."""
    if "image" not in sent:
        sent.pop("prompt_strength", None)
    return sent


def _flux_input(
    resolved: dict[str, Any], requested: dict[str, Any], renames: dict[str, str]
) -> dict[str, Any]:
    """FLUX.1 [schnell]/[dev] take an aspect ratio only: an exact size is rendered at the
    nearest ratio and resized afterwards."""
    sent = {renames.get(k, k): v for k, v in _without(resolved, "width", "height").items()}
    if _explicit_size(requested):
        width, height = resolved["width"], resolved["height"]
        sent["aspect_ratio"] = nearest_ratio(width, height)
        if flux_size(sent["aspect_ratio"], sent.get("megapixels", "1")) != (width, height):
            sent[RESIZE_KEY] = f"{width}x{height}"
    return sent


def adapt_flux_schnell(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as flux-schnell's input."""
    return _flux_input(resolved, requested, {})


def adapt_flux_dev(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as flux-dev's input (`guidance_scale` is called `guidance` there)."""
    return _no_strength_without_image(
        _flux_input(resolved, requested, {"guidance_scale": "guidance"})
    )


def pro_custom_size(width: int, height: int) -> tuple[int, int]:
    """The custom size flux-1.1-pro renders for a wish: same shape, 32-pixel blocks, in bounds."""
    low, high = PRO_SIDE
    # Shrink until the long side fits, or grow until the short side does; a shape too
    # extreme for both is clamped, and the resize afterwards restores it.
    scale = min(1.0, high / max(width, height))
    if min(width, height) * scale < low:
        scale = low / min(width, height)
    new_width, new_height = (min(high, max(low, _round_to(s * scale, 32))) for s in (width, height))
    return new_width, new_height


def adapt_flux_pro(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """FLUX1.1 [pro] renders custom sizes in 32-pixel blocks, and the ratios it lacks
    (21:9, 9:21) that way too; an exact size that is not a multiple of 32 is resized."""
    sent = {
        INPUT_KEYS["flux-1.1-pro"].get(k, k): v
        for k, v in _without(resolved, "width", "height").items()
    }
    explicit = _explicit_size(requested)
    if explicit or resolved["aspect_ratio"] not in PRO_RATIOS:
        width, height = resolved["width"], resolved["height"]
        custom = pro_custom_size(width, height)
        sent.update(aspect_ratio="custom", width=custom[0], height=custom[1])
        if explicit and custom != (width, height):
            sent[RESIZE_KEY] = f"{width}x{height}"
    return sent


def adapt_sdxl(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """SDXL takes width and height (no aspect ratio) in 8-pixel blocks."""
    sent = _without(resolved, "aspect_ratio")
    width, height = resolved["width"], resolved["height"]
    sent["width"], sent["height"] = _round_to(width, 8), _round_to(height, 8)
    if (sent["width"], sent["height"]) != (width, height):
        sent[RESIZE_KEY] = f"{width}x{height}"
    return _no_strength_without_image(sent)


def adapt_flux_kontext(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """FLUX.1 Kontext [pro] edits `input_image` by instruction; with a picture and no aspect
    ratio asked, the output keeps the picture's shape. It takes at most tolerance 2 with an
    input picture."""
    sent = {INPUT_KEYS["flux-kontext-pro"].get(k, k): v for k, v in _without(resolved).items()}
    if "input_image" in sent:
        if "aspect_ratio" not in requested:
            sent["aspect_ratio"] = "match_input_image"
        if sent.get("safety_tolerance", 0) > KONTEXT_IMAGE_TOLERANCE:
            warnings.append(
                f"safety_tolerance={sent['safety_tolerance']} is above what flux-kontext-pro "
                f"allows with an input picture; {KONTEXT_IMAGE_TOLERANCE} was used"
            )
            sent["safety_tolerance"] = KONTEXT_IMAGE_TOLERANCE
    return sent


def _size_params(default: int, what: str) -> tuple[ParamSpec, ParamSpec]:
    return (
        ParamSpec("width", "integer", default, 128, 2048, description=f"Width in pixels; {what}"),
        ParamSpec("height", "integer", default, 128, 2048, description=f"Height in pixels; {what}"),
    )


_NEAREST = "rendered at the nearest aspect ratio, then resized"
_SEED = ParamSpec("seed", "integer", None, 0, MAX_SEED, description="Random if empty")
_FLUX_FORMAT = ParamSpec("output_format", "enum", "webp", choices=("webp", "jpg", "png"))
_FLUX_QUALITY = ParamSpec("output_quality", "integer", 80, 0, 100, description="JPEG/WebP quality")
_FLUX_OUTPUTS = ParamSpec("num_outputs", "integer", 1, 1, 4, description="Images per job")
_GO_FAST = ParamSpec(
    "go_fast", "boolean", True, description="fp8 quantized: faster, but not deterministic"
)
_MEGAPIXELS = ParamSpec(
    "megapixels", "enum", "1", choices=("1", "0.25"), description="Approximate size"
)
_STRENGTH = ParamSpec(
    "prompt_strength",
    "number",
    0.8,
    0,
    1,
    description="With an image: how far to move from it (1 ignores it)",
)

FLUX_SCHNELL = ModelSpec(
    id="flux-schnell",
    provider="replicate",
    label="FLUX.1 [schnell]",
    description="black-forest-labs/flux-schnell on Replicate: the fastest FLUX, 1-4 steps.",
    params=(
        *_size_params(1024, _NEAREST),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
        ParamSpec("num_inference_steps", "integer", 4, 1, 4, description="Denoising steps"),
        _SEED,
        _FLUX_FORMAT,
        _FLUX_QUALITY,
        _FLUX_OUTPUTS,
        _GO_FAST,
        _MEGAPIXELS,
    ),
    typical_seconds=3.0,
    adapt=adapt_flux_schnell,
)

FLUX_DEV = ModelSpec(
    id="flux-dev",
    provider="replicate",
    label="FLUX.1 [dev]",
    description="black-forest-labs/flux-dev on Replicate: higher quality, 28 steps by default.",
    params=(
        *_size_params(1024, _NEAREST),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
        ParamSpec("num_inference_steps", "integer", 28, 1, 50, description="Denoising steps"),
        ParamSpec("guidance_scale", "number", 3.0, 0, 10, description="Sent as `guidance`"),
        _SEED,
        _FLUX_FORMAT,
        _FLUX_QUALITY,
        _FLUX_OUTPUTS,
        _GO_FAST,
        _MEGAPIXELS,
        _STRENGTH,
    ),
    typical_seconds=12.0,
    inputs=("image",),
    adapt=adapt_flux_dev,
)

FLUX_PRO = ModelSpec(
    id="flux-1.1-pro",
    provider="replicate",
    label="FLUX1.1 [pro]",
    description="black-forest-labs/flux-1.1-pro on Replicate: one image per job, custom sizes.",
    params=(
        *_size_params(1024, "sent as a custom size in 32-pixel blocks (256-1440)"),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
        _SEED,
        _FLUX_FORMAT,
        _FLUX_QUALITY,
        ParamSpec(
            "safety_tolerance", "integer", 2, 1, 6, description="1 is strictest, 6 most permissive"
        ),
        ParamSpec(
            "prompt_upsampling", "boolean", False, description="Let the model embellish the prompt"
        ),
    ),
    base_size=1440,
    typical_seconds=8.0,
    inputs=("image",),  # sent as `image_prompt` (Flux Redux): it guides the composition
    adapt=adapt_flux_pro,
)

SDXL = ModelSpec(
    id="sdxl",
    provider="replicate",
    label="Stable Diffusion XL",
    description=f"stability-ai/sdxl on Replicate (version {SDXL_VERSION[:8]}); PNG output.",
    params=(
        *_size_params(1024, "sent in 8-pixel blocks"),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
        ParamSpec("num_inference_steps", "integer", 50, 1, 500, description="Denoising steps"),
        ParamSpec("guidance_scale", "number", 7.5, 1, 50, description="Classifier-free guidance"),
        ParamSpec("negative_prompt", "string", "", description="What to keep out of the picture"),
        _SEED,
        ParamSpec("num_outputs", "integer", 1, 1, 4, description="Images per job"),
        ParamSpec("scheduler", "enum", "K_EULER", choices=SDXL_SCHEDULERS),
        ParamSpec("refine", "enum", "no_refiner", choices=SDXL_REFINERS),
        ParamSpec(
            "high_noise_frac", "number", 0.8, 0, 1, description="Noise share for the refiner"
        ),
        _STRENGTH,
    ),
    typical_seconds=15.0,
    inputs=("image", "mask"),  # a mask repaints its white parts (inpainting)
    adapt=adapt_sdxl,
)

FLUX_KONTEXT_PRO = ModelSpec(
    id="flux-kontext-pro",
    provider="replicate",
    label="FLUX.1 Kontext [pro]",
    description=(
        "black-forest-labs/flux-kontext-pro on Replicate: edits a picture by instruction "
        '("make it night"), or draws from text alone.'
    ),
    params=(
        ParamSpec(
            "aspect_ratio",
            "enum",
            "1:1",
            choices=ASPECT_RATIOS,
            description="Left out with an image: the image's own shape",
        ),
        _SEED,
        ParamSpec("output_format", "enum", "png", choices=("png", "jpg")),
        ParamSpec(
            "safety_tolerance",
            "integer",
            2,
            0,
            6,
            description="0 is strictest, 6 most permissive (at most 2 with an image)",
        ),
        ParamSpec(
            "prompt_upsampling", "boolean", False, description="Let the model embellish the prompt"
        ),
    ),
    typical_seconds=8.0,
    inputs=("image",),  # sent as `input_image`
    adapt=adapt_flux_kontext,
)

MODELS = (FLUX_SCHNELL, FLUX_DEV, FLUX_PRO, SDXL, FLUX_KONTEXT_PRO)
ROUTES = {
    "flux-schnell": Route("black-forest-labs/flux-schnell"),
    "flux-dev": Route("black-forest-labs/flux-dev"),
    "flux-1.1-pro": Route("black-forest-labs/flux-1.1-pro"),
    "sdxl": Route("stability-ai/sdxl", SDXL_VERSION),
    "flux-kontext-pro": Route("black-forest-labs/flux-kontext-pro"),
}
INPUT_KEYS: dict[str, dict[str, str]] = {
    "flux-dev": {"image": "image"},
    "flux-1.1-pro": {"image": "image_prompt"},
    "sdxl": {"image": "image", "mask": "mask"},
    "flux-kontext-pro": {"image": "input_image"},
}
"""Each model's input names for our picture roles. The job's provider parameters hold the
upload ids under these names; the bytes are put in their place when the prediction is made."""
