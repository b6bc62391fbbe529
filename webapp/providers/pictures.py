"""What every provider does with the pictures and answers it gets back: decode them within
a pixel cap, cover-fit them to an exact size, and read a `Retry-After`.

A model that cannot render the exact size a job asks renders the nearest it can; its
provider parameters then hold `resize_to` ("WxH") and the provider cover-fits the outputs
to it (`parse_size`, `cover_fit`).
"""

from __future__ import annotations

import email.utils
import io
import warnings
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageOps

from webapp.providers.base import PermanentProviderError

RESIZE_KEY = "resize_to"
DECODABLE = ("PNG", "JPEG", "WEBP")
MAX_RETRY_AFTER = 3600.0


def decode_image(data: bytes, max_pixels: int, error: str, what: str = "an output") -> Image.Image:
    """Decode a picture as PNG, JPEG or WebP, refusing oversized or broken ones with a
    permanent error whose message starts with `error` (the provider's name for its errors)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=DECODABLE)
            # The header gives the size before any pixel is decoded.
            if image.width * image.height > max_pixels:
                raise PermanentProviderError(
                    f"{error}: {what} of {image.width}x{image.height} pixels is over "
                    f"the limit of {max_pixels}"
                )
            image.load()
    except PermanentProviderError:
        raise
    except Exception as exc:  # Pillow raises many kinds for corrupt files
        raise PermanentProviderError(
            f"{error}: {what} is not a readable PNG, JPEG or WebP image",
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


def retry_after_header(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), at most an hour."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(MAX_RETRY_AFTER, seconds))
