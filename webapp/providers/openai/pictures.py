"""Pictures in and out of OpenAI's Images API: the files an edit sends, the pictures an
answer holds (`b64_json` or `url`), and what the answer reports about the run."""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
from typing import Any, Protocol

from PIL import Image, ImageOps

from webapp.providers.base import PermanentProviderError
from webapp.providers.openai.client import API_ERROR, MAX_IMAGE_BYTES, MAX_PIXELS, OpenAIClient
from webapp.providers.pictures import decode_image


class InputPicture(Protocol):
    """What an edit reads of a `webapp.inputs.InputPicture` (providers do not import the
    domain: the worker hands the pictures over in `GenerationTask.inputs`)."""

    data: bytes
    mime_type: str

    def image(self) -> Image.Image: ...


def edit_files(inputs: dict[str, InputPicture]) -> dict[str, tuple[str, bytes, str]]:
    """The multipart files of an edit: the picture as stored, the mask in OpenAI's form."""
    image = inputs["image"]
    extension = mimetypes.guess_extension(image.mime_type) or ".png"
    files = {"image": (f"image{extension}", image.data, image.mime_type)}
    if "mask" in inputs:
        files["mask"] = ("mask.png", alpha_mask(inputs["mask"]), "image/png")
    return files


def alpha_mask(mask: InputPicture) -> bytes:
    """Our mask (grayscale, white: may change) as OpenAI's: a PNG of the same size whose
    transparent pixels are the ones that may change."""
    gray = mask.image().convert("L")
    picture = Image.new("RGBA", gray.size, (0, 0, 0, 255))
    picture.putalpha(ImageOps.invert(gray))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def pictures_of(body: dict[str, Any], client: OpenAIClient) -> list[Image.Image]:
    """Every picture an answer holds, decoded; a `url` one is downloaded first."""
    items = body.get("data")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise PermanentProviderError(f"{API_ERROR}: the answer holds no image")
    pictures = []
    for item in items:
        if isinstance(item.get("b64_json"), str):
            data = _base64(item["b64_json"])
        elif isinstance(item.get("url"), str):
            data = client.download(item["url"])
        else:
            raise PermanentProviderError(f"{API_ERROR}: an answer item has no b64_json or url")
        pictures.append(decode(data))
    return pictures


def decode(data: bytes) -> Image.Image:
    """A picture's bytes as an image (PNG, JPEG or WebP within the pixel cap)."""
    return decode_image(data, MAX_PIXELS, API_ERROR)


def report_of(body: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """What the job keeps from an answer: the prompt as the model rewrote it, token usage
    (what gpt-image-1 is billed by) and OpenAI's request id."""
    report: dict[str, Any] = {}
    revised = [i.get("revised_prompt") for i in body.get("data") or () if isinstance(i, dict)]
    revised = [r for r in revised if isinstance(r, str) and r]
    if revised:
        report["revised_prompt"] = revised[0]  # one per request: dall-e-3 draws one picture
    if isinstance(body.get("usage"), dict):
        report["usage"] = body["usage"]
    if request_id:
        report["request_id"] = request_id[:100]
    return report


def _base64(text: str) -> bytes:
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise PermanentProviderError(
            f"{API_ERROR}: an image is larger than {MAX_IMAGE_BYTES} bytes"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentProviderError(f"{API_ERROR}: an answer's b64_json is not base64") from exc
