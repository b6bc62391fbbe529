"""The OpenAI image models: the sizes and options they take, and how ours map onto them.

Each model renders three sizes only. A `width`/`height` it cannot render is drawn at the
allowed size nearest in shape and cover-resized afterwards (`resize_to`, as for Replicate);
an `aspect_ratio` it has no size for is drawn at the nearest one and cropped to the ratio.

The job's provider parameters are OpenAI's request fields (all but `model` and `prompt`) in
OpenAI's names, with three exceptions: `output_format` and `output_quality` stay in our
terms (`jpg`, 0-100), because the worker stores the pictures with them; they are sent as
`output_format: jpeg` and `output_compression` (`request_fields`). `resize_to` is ours, and
`image`/`mask` hold upload ids whose bytes go to `/images/edits` as files.
"""

from __future__ import annotations

import math
from typing import Any

from webapp.providers.base import ASPECT_RATIOS, ModelSpec, ParamSpec
from webapp.providers.mapping import ratio_of
from webapp.providers.pictures import RESIZE_KEY

GPT_IMAGE = "gpt-image-1"
DALL_E_3 = "dall-e-3"
SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    GPT_IMAGE: ((1024, 1024), (1536, 1024), (1024, 1536)),
    DALL_E_3: ((1024, 1024), (1792, 1024), (1024, 1792)),
}
WIRE_FORMATS = {"png": "png", "jpg": "jpeg", "webp": "webp"}
"""Our output formats by the name OpenAI gives them."""
COMPRESSED = ("jpg", "webp")  # the formats OpenAI takes an `output_compression` for
KEEPS_ALPHA = ("png", "webp")


def _text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def nearest_size(sizes: tuple[tuple[int, int], ...], ratio: float) -> tuple[int, int]:
    """The allowed size closest in shape to a width/height ratio (the least to crop)."""
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1] / ratio)))


def crop_to_ratio(size: tuple[int, int], ratio: float) -> tuple[int, int]:
    """The largest size of a ratio that fits inside `size`."""
    width, height = size
    if width / height > ratio:
        return round(height * ratio), height
    return width, round(width / ratio)


def fit_size(
    model_id: str, resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """`size` (and `resize_to` when the model cannot render what was asked), with a warning
    naming the size it renders instead."""
    sizes = SIZES[model_id]
    allowed = ", ".join(_text(s) for s in sizes)
    if "width" in requested or "height" in requested:
        wish = (int(resolved["width"]), int(resolved["height"]))
        if wish in sizes:
            return {"size": _text(wish)}
        chosen = nearest_size(sizes, wish[0] / wish[1])
        warnings.append(
            f"{model_id} renders only {allowed}: {_text(wish)} was rendered at "
            f"{_text(chosen)} and resized to {_text(wish)}"
        )
        return {"size": _text(chosen), RESIZE_KEY: _text(wish)}
    if "aspect_ratio" in requested:
        aspect = str(resolved["aspect_ratio"])
        chosen = nearest_size(sizes, ratio_of(aspect))
        cropped = crop_to_ratio(chosen, ratio_of(aspect))
        if cropped == chosen:
            return {"size": _text(chosen)}
        warnings.append(
            f"{model_id} renders only {allowed}: aspect_ratio={aspect} was rendered at "
            f"{_text(chosen)} and cropped to {_text(cropped)}"
        )
        return {"size": _text(chosen), RESIZE_KEY: _text(cropped)}
    return {"size": _text(sizes[0])}


def _common(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved parameters without our sizing ones, `num_outputs` as `n`."""
    sent = {
        k: v
        for k, v in resolved.items()
        if k not in ("width", "height", "aspect_ratio", "num_outputs") and v is not None
    }
    sent["n"] = int(resolved.get("num_outputs") or 1)
    return sent


def adapt_gpt_image(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as gpt-image-1's request fields."""
    sent = {**_common(resolved), **fit_size(GPT_IMAGE, resolved, requested, warnings)}
    if sent.get("background") == "transparent" and sent.get("output_format") not in KEEPS_ALPHA:
        # OpenAI refuses a transparent JPEG; the format is what the job stores, so it wins.
        warnings.append(
            f"background=transparent needs output_format png or webp, not "
            f"{sent.get('output_format')}; opaque was used"
        )
        sent["background"] = "opaque"
    if "image" in sent:  # `/images/edits` has no `moderation`
        if "moderation" in requested:
            warnings.append("moderation is not supported with an image and was ignored")
        sent.pop("moderation", None)
    return sent


def adapt_dall_e_3(
    resolved: dict[str, Any], requested: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    """Our parameters as dall-e-3's request fields (one picture per request)."""
    return {**_common(resolved), **fit_size(DALL_E_3, resolved, requested, warnings)}


def request_fields(model_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """The fields OpenAI is sent (but `model`, `prompt` and files) for a job's parameters."""
    fields = {
        k: v
        for k, v in params.items()
        if k not in (RESIZE_KEY, "image", "mask", "output_format", "output_quality")
    }
    if model_id == GPT_IMAGE:  # always answers in base64
        fmt = str(params.get("output_format") or "png")
        fields["output_format"] = WIRE_FORMATS[fmt]
        if fmt in COMPRESSED and params.get("output_quality") is not None:
            fields["output_compression"] = int(params["output_quality"])
    else:
        # The pictures inline: no second request, to a CDN whose links expire in an hour.
        fields["response_format"] = "b64_json"
    return fields


def _size_params(model_id: str) -> tuple[ParamSpec, ...]:
    allowed = ", ".join(_text(s) for s in SIZES[model_id])
    what = f"rendered at the nearest of {allowed}, then resized"
    return (
        ParamSpec("width", "integer", 1024, 128, 2048, description=f"Width in pixels; {what}"),
        ParamSpec("height", "integer", 1024, 128, 2048, description=f"Height in pixels; {what}"),
        ParamSpec(
            "aspect_ratio",
            "enum",
            "1:1",
            choices=ASPECT_RATIOS,
            description="Rendered at the nearest size, then cropped to the ratio",
        ),
    )


GPT_IMAGE_1 = ModelSpec(
    id=GPT_IMAGE,
    provider="openai",
    label="GPT Image 1",
    description=(
        "OpenAI's gpt-image-1: follows long prompts and renders text; transparent "
        "backgrounds; edits a picture (with a mask: only its white part)."
    ),
    params=(
        *_size_params(GPT_IMAGE),
        ParamSpec("num_outputs", "integer", 1, 1, 4, description="Images per job (sent as n)"),
        ParamSpec("quality", "enum", "auto", choices=("auto", "low", "medium", "high")),
        ParamSpec(
            "background",
            "enum",
            "auto",
            choices=("auto", "transparent", "opaque"),
            description="transparent needs png or webp",
        ),
        ParamSpec("output_format", "enum", "png", choices=("png", "jpg", "webp")),
        ParamSpec(
            "output_quality",
            "integer",
            90,
            0,
            100,
            description="JPEG/WebP quality (sent as output_compression)",
        ),
        ParamSpec(
            "moderation",
            "enum",
            "auto",
            choices=("auto", "low"),
            description="low: less restrictive filtering (not with an image)",
        ),
    ),
    typical_seconds=40.0,
    inputs=("image", "mask"),  # sent to /images/edits; the mask as OpenAI's alpha mask
    adapt=adapt_gpt_image,
)

DALL_E_3_SPEC = ModelSpec(
    id=DALL_E_3,
    provider="openai",
    label="DALL·E 3",
    description="OpenAI's dall-e-3: one image per job; rewrites the prompt (kept on the job).",
    params=(
        *_size_params(DALL_E_3),
        ParamSpec(
            "num_outputs", "integer", 1, 1, 1, description="dall-e-3 draws one image per job"
        ),
        ParamSpec("quality", "enum", "standard", choices=("standard", "hd")),
        ParamSpec(
            "style",
            "enum",
            "vivid",
            choices=("vivid", "natural"),
            description="vivid: dramatic; natural: less hyper-real",
        ),
    ),
    typical_seconds=15.0,
    adapt=adapt_dall_e_3,
)

MODELS = (GPT_IMAGE_1, DALL_E_3_SPEC)
