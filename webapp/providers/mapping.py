"""Fit requested parameters to a model: defaults, clamping, size, warnings."""

from __future__ import annotations

from typing import Any

from webapp.providers.base import ASPECT_RATIOS, ModelSpec

SIZE_KEYS = ("width", "height", "aspect_ratio")
INPUT_ROLES = ("image", "mask")
"""The parameters that name input pictures (`webapp.inputs`), kept by their upload ids."""


def resolve_parameters(
    spec: ModelSpec, requested: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Return the full parameters a model will run with, and warnings about what changed."""
    resolved: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in requested.items():
        if name in INPUT_ROLES:  # pictures are the job's inputs, checked apart
            resolved[name] = value
            continue
        param = spec.param(name)
        if param is None:
            warnings.append(f"{name} is not supported by the {spec.id} model and was ignored")
            continue
        # Booleans were validated as booleans; only numbers have a range to clamp to.
        if param.type in ("integer", "number") and value is not None:
            value = _clamp(spec, name, value, param.minimum, param.maximum, warnings)
        if param.choices and value not in param.choices:
            warnings.append(
                f"{name}={value} is not offered by the {spec.id} model; "
                f"{param.default} was used instead"
            )
            value = param.default
        resolved[name] = value
    for param in spec.params:
        if param.name not in SIZE_KEYS:
            resolved.setdefault(param.name, param.default)
    if spec.param("width") and spec.param("height"):
        resolved.update(_size(spec, requested, warnings))
    if spec.adapt is not None:
        resolved = spec.adapt(resolved, requested, warnings)
    return resolved, warnings


def _clamp(
    spec: ModelSpec,
    name: str,
    value: float,
    low: float | None,
    high: float | None,
    warnings: list[str],
) -> Any:
    """Bring a number into the model's own range, saying so."""
    if low is not None and value < low:
        warnings.append(f"{name}={value} is below the {spec.id} model's minimum; {low:g} was used")
        return type(value)(low)
    if high is not None and value > high:
        warnings.append(f"{name}={value} is above the {spec.id} model's maximum; {high:g} was used")
        return type(value)(high)
    return value


def ratio_of(aspect_ratio: str) -> float:
    """Width divided by height for a ratio written like "16:9"."""
    w, h = aspect_ratio.split(":")
    return int(w) / int(h)


def _size(spec: ModelSpec, requested: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Decide width and height: explicit sizes win, else the aspect ratio at the base size."""
    width, height = requested.get("width"), requested.get("height")
    aspect = requested.get("aspect_ratio")
    bounds = spec.param("width")
    low = int(bounds.minimum or 128) if bounds else 128
    high = int(bounds.maximum or 2048) if bounds else 2048
    if width and height:
        if aspect and abs(ratio_of(aspect) - width / height) > 0.01:
            warnings.append(
                f"aspect_ratio={aspect} was ignored because width and height were given"
            )
        return {
            "width": width,
            "height": height,
            "aspect_ratio": aspect or nearest_aspect_ratio(width, height),
        }
    ratio = ratio_of(aspect) if aspect else 1.0
    if width:
        height = _fit(width / ratio, low, high)
    elif height:
        width = _fit(height * ratio, low, high)
    elif ratio >= 1:
        width, height = spec.base_size, _fit(spec.base_size / ratio, low, high)
    else:
        width, height = _fit(spec.base_size * ratio, low, high), spec.base_size
    return {
        "width": width,
        "height": height,
        "aspect_ratio": aspect or nearest_aspect_ratio(width, height),
    }


def _fit(value: float, low: int, high: int) -> int:
    """Round a side to a multiple of 8 within bounds (models work in 8-pixel blocks)."""
    return max(low, min(high, round(value / 8) * 8))


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest to a width and height."""
    return min(ASPECT_RATIOS, key=lambda r: abs(ratio_of(r) - width / height))
