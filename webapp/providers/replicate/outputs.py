"""What comes back from a prediction: progress in its logs, and its output images."""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

from PIL import Image, ImageOps

from webapp.providers.base import PermanentProviderError
from webapp.providers.replicate.client import API_ERROR

# A tqdm progress line, e.g. " 45%|████▌     | 9/20 [00:02<00:02, 4.1it/s]".
_TQDM = re.compile(r"(\d{1,3})%\|[^|\n]*\|\s*(\d+)/(\d+)")
DECODABLE = ("PNG", "JPEG", "WEBP")


def parse_progress(logs: str | None) -> float | None:
    """The fraction done according to the last tqdm bar in a prediction's logs, if any."""
    if not logs:
        return None
    matches = _TQDM.findall(logs)
    if not matches:
        return None
    percent, current, total = (int(x) for x in matches[-1])
    fraction = current / total if total else percent / 100
    return max(0.0, min(1.0, fraction))


def output_urls(output: Any) -> list[str]:
    """A prediction's output as a list of URLs: Replicate gives one string or a list."""
    urls = [output] if isinstance(output, str) else output
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise PermanentProviderError(f"{API_ERROR}: the prediction succeeded without any image")
    return urls


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an output file as PNG, JPEG or WebP, refusing oversized or broken images."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=DECODABLE)
            # The header gives the size before any pixel is decoded.
            if image.width * image.height > max_pixels:
                raise PermanentProviderError(
                    f"{API_ERROR}: an output of {image.width}x{image.height} pixels is over "
                    f"the limit of {max_pixels}"
                )
            image.load()
    except PermanentProviderError:
        raise
    except Exception as exc:  # Pillow raises many kinds for corrupt files
        raise PermanentProviderError(
            f"{API_ERROR}: an output is not a readable PNG, JPEG or WebP image",
            details={"reason": type(exc).__name__},
        ) from exc
    return image


def parse_size(value: Any) -> tuple[int, int] | None:
    """A "WxH" size, as the `resize_to` parameter holds it."""
    if not isinstance(value, str):
        return None
    width, sep, height = value.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        return None
    return int(width), int(height)


def cover_fit(image: Image.Image, size: tuple[int, int] | None) -> Image.Image:
    """Scale to cover the exact size asked and crop the overflow evenly (no distortion)."""
    if size is None or image.size == size:
        return image
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
