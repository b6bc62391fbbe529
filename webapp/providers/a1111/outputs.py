"""What a txt2img or img2img answer holds: base64 pictures, and in `info` (a JSON string)
the seeds and checkpoint the server really used."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from PIL import Image

from webapp.providers.a1111.client import API_ERROR
from webapp.providers.base import PermanentProviderError
from webapp.providers.pictures import decode_image

MAX_PIXELS = 4096 * 4096
"""Per picture: four times the largest size a job asks (2048x2048), so a server whose
extensions upscale still passes, and a decompression bomb does not."""


def decode(text: str) -> Image.Image:
    """A base64 picture of an answer (or a live preview), with or without a `data:` prefix."""
    payload = text.partition(",")[2] if text.startswith("data:") else text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentProviderError(f"{API_ERROR}: a picture is not base64") from exc
    return decode_image(data, MAX_PIXELS, API_ERROR, "a picture")


def info_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer's `info`: a JSON object sent as a string (an object, from some forks)."""
    info = answer.get("info")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError:
            return {}
    return info if isinstance(info, dict) else {}


def pictures_of(answer: dict[str, Any], count: int) -> list[Image.Image]:
    """The `count` pictures of a run, decoded: those from `index_of_first_image` on, as a
    grid or an extension's extra pictures may come before or after them."""
    images = answer.get("images")
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise PermanentProviderError(f"{API_ERROR}: the answer's images are not a list")
    first = info_of(answer).get("index_of_first_image")
    first = first if isinstance(first, int) and 0 <= first < len(images) else 0
    chosen = images[first : first + count]
    if not chosen:
        raise PermanentProviderError(f"{API_ERROR}: the run ended without any picture")
    return [decode(image) for image in chosen]


def report_of(answer: dict[str, Any], count: int) -> dict[str, Any]:
    """What the job keeps of the run: the seed used (each picture's, for several) and the
    checkpoint that ran (a server that lost the one asked falls back to another)."""
    info = info_of(answer)
    report: dict[str, Any] = {}
    if isinstance(info.get("seed"), int):
        report["seed"] = info["seed"]
    seeds = info.get("all_seeds")
    if count > 1 and isinstance(seeds, list) and all(isinstance(s, int) for s in seeds):
        report["all_seeds"] = seeds[:count]
    for key in ("sd_model_name", "sd_model_hash"):
        if isinstance(info.get(key), str):
            report[key] = info[key][:200]
    return report
