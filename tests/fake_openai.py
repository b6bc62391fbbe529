"""A fake OpenAI Images API on loopback: real HTTP, OpenAI's shapes, real pictures.

`FakeOpenAI` serves, under a prefix (`/v1`, or another to stand for a compatible server):
- `POST {prefix}/images/generations` (JSON) for `gpt-image-1` (always `b64_json`, with
  `usage`) and `dall-e-3` (`url` by default or `b64_json`, each with a `revised_prompt`);
- `POST {prefix}/images/edits` (multipart) for `gpt-image-1`: `image` (or `image[]`) and an
  optional `mask`, which must be a PNG with an alpha channel of the image's size;
- `GET /files/{name}`: the pictures of `url` answers (a CDN elsewhere upstream; it wants
  no key).

Pictures are real PNG/JPEG/WebP files of the size asked, a coloured field with a white disc
in the middle (to check crops against); a transparent background leaves the corners clear.
Fields are checked against each model's (stricter than OpenAI: an unknown field is refused,
so a mapping mistake shows). Errors come in OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`: 401 for a wrong key (quoting it masked, as OpenAI does), 400 for invalid
fields. Faults are injected per route (`generations`, `edits`, `file`): an error status with
`Retry-After` / `retry-after-ms`, a slow answer (`hang`), or a `hold` the test releases;
plans decide how the next answer goes. Every request is recorded, multipart files included.
"""

from __future__ import annotations

import base64
import io
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from tests.fake_http import FakeHandler, FakeServer, Fault, Gate, json_or_raw, multipart

GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}

# Each model's fields: name -> (JSON type, constraint): a tuple of choices or (min, max).
_GPT_IMAGE_COMMON: dict[str, tuple[str, Any]] = {
    "model": ("string", None),
    "prompt": ("string", None),
    "n": ("integer", (1, 10)),
    "size": ("string", GPT_IMAGE_SIZES),
    "quality": ("string", ("low", "medium", "high", "auto")),
    "background": ("string", ("transparent", "opaque", "auto")),
    "output_format": ("string", ("png", "jpeg", "webp")),
    "output_compression": ("integer", (0, 100)),
    "user": ("string", None),
}
SCHEMAS: dict[tuple[str, str], dict[str, tuple[str, Any]]] = {
    ("generations", "gpt-image-1"): {
        **_GPT_IMAGE_COMMON,
        "moderation": ("string", ("low", "auto")),
    },
    ("generations", "dall-e-3"): {
        "model": ("string", None),
        "prompt": ("string", None),
        "n": ("integer", (1, 1)),
        "size": ("string", DALL_E_3_SIZES),
        "quality": ("string", ("standard", "hd")),
        "style": ("string", ("vivid", "natural")),
        "response_format": ("string", ("url", "b64_json")),
        "user": ("string", None),
    },
    ("edits", "gpt-image-1"): {
        **_GPT_IMAGE_COMMON,
        "input_fidelity": ("string", ("low", "high")),
    },
}
# Output tokens of one gpt-image-1 picture by quality and size (OpenAI's price table).
_TOKENS = {"low": (272, 408), "medium": (1056, 1584), "high": (4160, 6240), "auto": (1056, 1584)}


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict[str, Any]:
    """An error in OpenAI's shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


REFUSALS = {
    "content_policy_violation": error_body(
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        code="content_policy_violation",
    ),
    "moderation_blocked": error_body(
        "Your request was rejected by the safety system. If you believe this is an error, "
        "contact us at help.openai.com and include the request ID req_0123.",
        kind="image_generation_user_error",
        code="moderation_blocked",
    ),
    "rate_limit_exceeded": error_body(
        "Rate limit reached for gpt-image-1 in organization org-fake on images per minute "
        "(IPM): Limit 5, Used 5, Requested 1. Please try again in 3s.",
        kind="requests",
        code="rate_limit_exceeded",
    ),
    "insufficient_quota": error_body(
        "You exceeded your current quota, please check your plan and billing details.",
        kind="insufficient_quota",
        code="insufficient_quota",
    ),
    "server_error": error_body(
        "The server had an error while processing your request. Sorry about that!",
        kind="server_error",
    ),
}
"""Bodies OpenAI answers with, by the code a test asks `fail` for."""


@dataclass
class Plan:
    """How the next successful answer goes."""

    answer: str | None = None  # "url" or "b64_json" whatever was asked (a compatible server)
    output_bytes: bytes | None = None  # these bytes as every picture
    content_length: int | None = None  # a `url` picture claims this size (a lie, if smaller)
    revised_prompt: str | None = None


@dataclass
class Recorded:
    """A request the fake received: JSON in `body`, multipart in `form` and `files`."""

    method: str
    path: str
    route: str
    authorization: str | None
    content_type: str
    body: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str | None, str, bytes]] = field(default_factory=dict)

    @property
    def fields(self) -> dict[str, Any]:
        """The fields sent, JSON or multipart alike (multipart values are text)."""
        return dict(self.body) if isinstance(self.body, dict) else dict(self.form)


class FakeOpenAI(FakeServer[Recorded]):
    """OpenAI's Images API on 127.0.0.1; start() it, point OPENAI_BASE_URL at .base_url."""

    def __init__(self, key: str, *, prefix: str = "/v1", answer_seconds: float = 0.0) -> None:
        super().__init__()
        self.key, self.prefix, self.answer_seconds = key, prefix.rstrip("/"), answer_seconds
        self.plans: list[Plan] = []
        self.files: dict[str, tuple[bytes, str, int | None]] = {}
        self.answers: list[dict[str, Any]] = []  # every successful answer body, in order
        self.count = 0
        self.serve(_Handler)
        self.base_url = self.url + self.prefix

    def settings(self) -> dict[str, Any]:
        """App settings that send the OpenAI models here, with short timeouts."""
        return {
            "OPENAI_API_KEY": self.key,
            "OPENAI_BASE_URL": self.base_url,
            "OPENAI_CONNECT_TIMEOUT": 1.0,
            "OPENAI_READ_TIMEOUT": 2.0,
        }

    # -- knobs ----------------------------------------------------------------------------

    def fail(
        self,
        route: str,
        status: int,
        *,
        code: str | None = None,
        times: int = 1,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` requests of a route with an error (OpenAI's body for
        `code`, see `REFUSALS`, or `body`)."""
        if code is not None:
            body = REFUSALS[code]
        self.add_fault(
            Fault(
                route,
                status,
                times,
                retry_after=retry_after,
                retry_after_ms=retry_after_ms,
                body=body,
            )
        )

    def hold(self, route: str) -> Gate:
        """Hold the next request of a route until the test sets the gate's `release`."""
        gate = Gate()
        self.add_fault(Fault(route, 0, 1, gate=gate))
        return gate

    def plan_next(self, **plan: Any) -> None:
        """Decide how the next successful answer goes (see `Plan`)."""
        with self.lock:
            self.plans.append(Plan(**plan))

    # -- behaviour, called by the handler -------------------------------------------------

    def take_plan(self) -> Plan:
        with self.lock:
            return self.plans.pop(0) if self.plans else Plan()

    def answer(self, fields: dict[str, Any], inputs: dict[str, Image.Image]) -> dict[str, Any]:
        """The answer OpenAI gives to valid fields, with its pictures."""
        plan = self.take_plan()
        model = fields["model"]
        n = int(fields.get("n", 1))
        size = str(fields.get("size") or "1024x1024")
        size = "1024x1024" if size == "auto" else size
        width, height = (int(x) for x in size.split("x"))
        if model == "dall-e-3":
            wire, quality = "png", 100
            form = plan.answer or fields.get("response_format") or "url"
        else:
            wire = fields.get("output_format") or "png"
            quality = int(fields.get("output_compression", 100))
            form = plan.answer or "b64_json"
        transparent = fields.get("background") == "transparent"
        items = []
        for _ in range(n):
            with self.lock:
                self.count += 1
                number = self.count
            data = plan.output_bytes or picture((width, height), number, wire, quality, transparent)
            item: dict[str, Any] = {}
            if form == "url":
                name = f"img-{secrets.token_hex(8)}.{wire}"
                with self.lock:
                    self.files[name] = (data, FORMATS[wire][1], plan.content_length)
                item["url"] = f"{self.url}/files/{name}"
            else:
                item["b64_json"] = base64.b64encode(data).decode("ascii")
            if model == "dall-e-3":
                item["revised_prompt"] = (
                    plan.revised_prompt or f"A vivid picture: {fields['prompt']}"
                )
            items.append(item)
        body: dict[str, Any] = {"created": int(time.time()), "data": items}
        if model == "gpt-image-1":
            body.update(
                background="transparent" if transparent else "opaque",
                output_format=wire,
                quality=fields.get("quality", "auto"),
                size=size,
                usage=usage(fields, n, width * height > 1024 * 1024, inputs),
            )
        with self.lock:
            self.answers.append(body)
        return body


def usage(
    fields: dict[str, Any], n: int, large: bool, inputs: dict[str, Image.Image]
) -> dict[str, Any]:
    """gpt-image-1's token count: the prompt's words, the input pictures, the outputs."""
    text = len(str(fields["prompt"]).split()) + 10
    image = 323 * len([k for k in inputs if k.startswith("image")])
    output = _TOKENS[str(fields.get("quality", "auto"))][1 if large else 0] * n
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"image_tokens": image, "text_tokens": text},
        "output_tokens": output,
        "total_tokens": text + image + output,
    }


def picture(
    size: tuple[int, int], number: int, wire: str, quality: int, transparent: bool = False
) -> bytes:
    """A real picture that differs by number, with a centred white disc to check crops."""
    width, height = size
    colour = ((number * 67) % 256, (number * 131) % 256, (number * 197) % 256)
    if transparent:
        image = Image.new("RGBA", size, (0, 0, 0, 0))
        ImageDraw.Draw(image).ellipse(
            (width * 0.1, height * 0.1, width * 0.9, height * 0.9), fill=(*colour, 255)
        )
    else:
        image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.4, height * 0.4, width * 0.6, height * 0.6), fill="white")
    buffer = io.BytesIO()
    pil_format = FORMATS[wire][0]
    if pil_format == "PNG":
        image.save(buffer, "PNG", compress_level=1)
    elif pil_format == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=max(1, quality))
    else:
        image.save(buffer, "WEBP", quality=quality, method=0)
    return buffer.getvalue()


def masked_key(key: str) -> str:
    """A key as OpenAI quotes it back in a 401: its ends, starred in between."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "***"


def check_fields(schema: dict[str, tuple[str, Any]], fields: dict[str, Any]) -> dict | None:
    """OpenAI's 400 for the first field that is unknown or invalid, else None."""
    for name in ("model", "prompt"):
        if not fields.get(name):
            return error_body(f"Missing required parameter: '{name}'.", param=name)
    for name, value in fields.items():
        if name not in schema:
            return error_body(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
        kind, constraint = schema[name]
        ok = (
            isinstance(value, str)
            if kind == "string"
            else (isinstance(value, int) and not isinstance(value, bool))
        )
        if ok and isinstance(constraint, tuple) and kind == "string":
            ok = value in constraint
        elif ok and isinstance(constraint, tuple):
            ok = constraint[0] <= value <= constraint[1]
        if not ok:
            return error_body(
                f"Invalid value: '{value}'. Supported values are: {constraint}.",
                param=name,
                code="invalid_value",
            )
    if fields.get("background") == "transparent" and fields.get("output_format") == "jpeg":
        return error_body(
            "Transparent background is not supported for jpeg output.", param="background"
        )
    if "output_compression" in fields and fields.get("output_format", "png") == "png":
        return error_body(
            "output_compression is only supported for jpeg and webp.", param="output_compression"
        )
    return None


def _typed(form: dict[str, str]) -> dict[str, Any]:
    """Multipart text fields with the numbers a JSON body would carry as numbers."""
    return {
        k: int(v) if k in ("n", "output_compression") and v.isdigit() else v
        for k, v in form.items()
    }


class _Handler(FakeHandler):
    @property
    def fake(self) -> FakeOpenAI:
        return self.server.fake  # type: ignore[attr-defined]

    def _dispatch(self, method: str) -> None:
        raw = self._read_raw()
        path = self.path.split("?")[0]
        route = self._route(method, path)
        content_type = self.headers.get_content_type()
        recorded = Recorded(method, path, route, self.headers.get("Authorization"), content_type)
        if content_type == "multipart/form-data":
            for name, (filename, ctype, data) in multipart(
                self.headers.get("Content-Type", ""), raw
            ).items():
                if filename is None:
                    recorded.form[name] = data.decode()
                else:
                    recorded.files[name] = (filename, ctype, data)
        else:
            recorded.body = json_or_raw(raw)
        self.fake.record(recorded)
        fault = self.fake.take_fault(route)
        if self.fake.delayed(fault):
            return  # the fake is stopping
        if fault is not None and fault.status:
            return self._fault(fault)
        if route == "file":
            return self._file(path)
        if route == "?":
            return self._json(404, error_body(f"Invalid URL ({method} {path})"))
        if self.headers.get("Authorization") != f"Bearer {self.fake.key}":
            return self._unauthorized()
        if self.fake.answer_seconds and self.fake.closing.wait(self.fake.answer_seconds):
            return
        if route == "generations":
            self._generations(recorded)
        else:
            self._edits(recorded)

    def _route(self, method: str, path: str) -> str:
        if method == "POST" and path == f"{self.fake.prefix}/images/generations":
            return "generations"
        if method == "POST" and path == f"{self.fake.prefix}/images/edits":
            return "edits"
        if method == "GET" and path.startswith("/files/"):
            return "file"
        return "?"

    def _send(self, status: int, data: bytes, content_type: str, **headers: str) -> None:
        """Every OpenAI answer carries a request id."""
        super()._send(
            status, data, content_type, x_request_id=f"req_{secrets.token_hex(8)}", **headers
        )

    def _fault(self, fault: Fault) -> None:
        default = {429: "rate_limit_exceeded", 500: "server_error"}.get(fault.status)
        body = fault.body or (REFUSALS[default] if default else None)
        body = body or error_body(f"Error {fault.status}", kind="server_error")
        headers = {}
        if fault.retry_after:
            headers["Retry_After"] = fault.retry_after
        if fault.retry_after_ms:
            headers["retry_after_ms"] = fault.retry_after_ms
        self._json(fault.status, body, **headers)

    def _unauthorized(self) -> None:
        sent = self.headers.get("Authorization") or ""
        if not sent.startswith("Bearer "):
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return self._json(401, error_body(message))
        message = (
            f"Incorrect API key provided: {masked_key(sent.removeprefix('Bearer '))}. You can "
            "find your API key at https://platform.openai.com/account/api-keys."
        )
        self._json(401, error_body(message, code="invalid_api_key"))

    def _generations(self, recorded: Recorded) -> None:
        fields = recorded.body
        if not isinstance(fields, dict):
            return self._json(400, error_body("We could not parse the JSON body of your request."))
        schema = SCHEMAS.get(("generations", str(fields.get("model"))))
        if schema is None:
            message = (
                f"The model `{fields.get('model')}` does not exist or you do not have access to it."
            )
            return self._json(404, error_body(message, code="model_not_found"))
        problem = check_fields(schema, fields)
        if problem:
            return self._json(400, problem)
        self._json(200, self.fake.answer(fields, {}))

    def _edits(self, recorded: Recorded) -> None:
        fields = _typed(recorded.form)
        schema = SCHEMAS.get(("edits", str(fields.get("model"))))
        if schema is None:
            message = f"Invalid model {fields.get('model')}. The model must be one of gpt-image-1."
            return self._json(400, error_body(message, param="model", code="invalid_model"))
        problem = check_fields(schema, fields)
        if problem:
            return self._json(400, problem)
        pictures: dict[str, Image.Image] = {}
        for name, (_, _, data) in recorded.files.items():
            if name not in ("image", "image[]", "mask"):
                return self._json(400, error_body(f"Unknown parameter: '{name}'.", param=name))
            try:
                pictures[name] = Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP"))
                pictures[name].load()
            except Exception:
                return self._json(
                    400,
                    error_body(
                        f"Invalid image file for '{name}'.", param=name, code="invalid_image_format"
                    ),
                )
        image = pictures.get("image") or pictures.get("image[]")
        if image is None:
            return self._json(
                400, error_body("Missing required parameter: 'image'.", param="image")
            )
        mask = pictures.get("mask")
        if mask is not None:
            if mask.format != "PNG" or "A" not in mask.getbands():
                return self._json(
                    400,
                    error_body(
                        "Invalid mask image format - mask must be a PNG with an alpha channel.",
                        param="mask",
                        code="invalid_image_format",
                    ),
                )
            if mask.size != image.size:
                return self._json(
                    400,
                    error_body(
                        "Invalid mask image format - mask size does not match image size.",
                        param="mask",
                        code="invalid_image_format",
                    ),
                )
        self._json(200, self.fake.answer(fields, pictures))

    def _file(self, path: str) -> None:
        with self.fake.lock:
            entry = self.fake.files.get(path.removeprefix("/files/"))
        if entry is None:
            body = b"<Error><Code>BlobNotFound</Code></Error>"
            return self._send(404, body, "application/xml")
        data, content_type, claimed = entry
        headers = {"Content_Length": str(claimed)} if claimed is not None else {}
        self._send(200, data, content_type, **headers)
