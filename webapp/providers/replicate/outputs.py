"""What comes back from a prediction: progress in its logs, and its output images."""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from webapp.providers import pictures
from webapp.providers.base import PermanentProviderError
from webapp.providers.replicate.client import API_ERROR

# A tqdm progress line, e.g. " 45%|████▌     | 9/20 [00:02<00:02, 4.1it/s]".
_TQDM = re.compile(r"(\d{1,3})%\|[^|\n]*\|\s*(\d+)/(\d+)")


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
    """Decode an output file (see `webapp.providers.pictures.decode_image`)."""
    return pictures.decode_image(data, max_pixels, API_ERROR)
