"""Request validation (job bodies, listing query, webhook URLs) in the guide's 422 shape.

The guide's error shape (`type`, `loc`, `msg`, `input`, "String should have at least 1
character") is pydantic's, word for word, so pydantic validates requests here instead of a
hand-made translation of marshmallow's messages. flask-smorest still documents and serializes
responses with marshmallow.
"""

from __future__ import annotations

import functools
import json
import math
import unicodedata
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from flask import current_app
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)
from pydantic_core import PydanticCustomError

from webapp import netguard
from webapp.models import JobStatus
from webapp.providers.base import ASPECT_RATIOS, MAX_SEED, OUTPUT_FORMATS, ModelSpec, ParamSpec

MAX_PROMPT = 2000
MAX_URL = 2048
MAX_METADATA_BYTES = 16 * 1024

# The guide spells two of pydantic's error types in their older, shorter form.
_TYPE_NAMES = {"greater_than_equal": "greater_equal", "less_than_equal": "less_equal"}


class RequestInvalid(Exception):
    """A request failed validation; `errors` are in the guide's 422 shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


def error_item(kind: str, loc: list[str | int], msg: str, value: Any) -> dict[str, Any]:
    """One problem as the guide's 422 lists it: `type`, `loc`, `msg`, `input`."""
    return {"type": kind, "loc": loc, "msg": msg, "input": _json_safe(value)}


def invalid(kind: str, loc: list[str | int], msg: str, value: Any) -> RequestInvalid:
    """A `RequestInvalid` with one problem, to raise."""
    return RequestInvalid([error_item(kind, loc, msg, value)])


class BodyNotJson(Exception):
    """The request body could not be parsed as JSON."""


INVISIBLE = frozenset(
    "\u061c\u180e\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
"""Invisible characters that reorder or hide text (bidi overrides and isolates, marks,
zero-width space, word joiner, BOM): in a prompt shown to others, they make it read
otherwise than it is. The zero-width (non-)joiner stay: scripts and emoji need them."""


def _check_text(value: str) -> str:
    """Refuse blank text, control characters other than newline (LF or CRLF) and tab, and
    the invisible characters that change how text reads."""
    if not value.strip():
        raise PydanticCustomError("string_blank", "String should not be blank")
    # Browsers submit a textarea's line breaks as CRLF, so a CR before LF is a newline too.
    for char in value:
        if char in "\n\t":
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise PydanticCustomError(
                "string_control_character",
                "String should not contain control characters (found {code})",
                {"code": f"U+{ord(char):04X}"},
            )
        if char in INVISIBLE:
            raise PydanticCustomError(
                "string_invisible_character",
                "String should not contain invisible characters that reorder or hide text"
                " (found {code})",
                {"code": f"U+{ord(char):04X}"},
            )
    return value


def _check_optional_text(value: str) -> str:
    """Like `_check_text`, but an empty string is allowed."""
    return _check_text(value) if value else value


def _check_http_url(value: str) -> str:
    """Accept only absolute http(s) URLs with a host."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise PydanticCustomError("url_parsing", "Input should be a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise PydanticCustomError("url_scheme", "URL scheme should be 'http' or 'https'")
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in value):
        raise PydanticCustomError("url_parsing", "Input should be a valid URL")
    return value


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Keep metadata small enough to store and echo back, and valid JSON (no NaN)."""
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode())
    except ValueError as exc:
        raise PydanticCustomError(
            "finite_number", "Metadata numbers should be finite (no NaN or Infinity)"
        ) from exc
    if size > MAX_METADATA_BYTES:
        raise PydanticCustomError(
            "metadata_too_large",
            "Metadata should be at most {limit} bytes as JSON, got {size}",
            {"limit": MAX_METADATA_BYTES, "size": size},
        )
    return value


def _unify_newlines(value: Any) -> Any:
    """Store CRLF line breaks (as browsers send them) as plain newlines."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


# What the validators above accept, as JSON Schema patterns for the OpenAPI document. They
# only document: the validators stay the authority (and keep their own error wording).
_INVISIBLE = r"\u061C\u180E\u200B\u200E\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF"
_CONTROL = r"\x00-\x08\x0B-\x1F\x7F-\x9F" + _INVISIBLE  # `_check_text`: Cc but tab, LF
_UNICODE_SPACE = "\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# `str.isspace()`, control and invisible characters: none of them makes a text not blank
_SPACE = r"\x00-\x20\x7F-\xA0" + _UNICODE_SPACE + _INVISIBLE
_TEXT_CHAR = rf"(?:[^{_CONTROL}]|\r\n)"  # CRLF counts as a newline
_SOLID_TEXT = rf"{_TEXT_CHAR}*[^{_SPACE}]{_TEXT_CHAR}*"  # not blank
TEXT_PATTERN = rf"^{_SOLID_TEXT}$"
OPTIONAL_TEXT_PATTERN = rf"^(?:{_SOLID_TEXT})?$"
_TEXT_RULES = (
    f"{MAX_PROMPT} characters at most, not blank, no control characters but tab and newline, "
    "no invisible characters that reorder or hide text (bidi controls, zero-width space); "
    "a CRLF line break counts as one character (it is stored as LF)"
)
# `_check_http_url` and the SSRF guard's shape check: http(s), a host, no credentials, a port
# that fits in 16 bits, no white space or control characters. Host names are written in
# ASCII here; international ones are accepted too (and looked up in their IDNA form).
_PORT = r"(?:[0-9]{0,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_URL_CHAR = rf"[^\x00-\x20\x85\xA0{_UNICODE_SPACE}]"
WEBHOOK_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~!$&'()*+,;=%-]+(?::{_PORT})?(?:[/?#]{_URL_CHAR}*)?$"
)

Prompt = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PROMPT,
        json_schema_extra={"pattern": TEXT_PATTERN},
        description=f"The text: {_TEXT_RULES}.",
    ),
    BeforeValidator(_unify_newlines),
    AfterValidator(_check_text),
]


class GenerationParameters(BaseModel):
    """The generation parameters of the guide, with its global bounds.

    Other keys pass through to `check_model_parameters`, which accepts only those the chosen
    model declares (e.g. `go_fast` for flux-schnell) and refuses the rest as extra inputs.
    """

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    width: int | None = Field(None, ge=128, le=2048)
    height: int | None = Field(None, ge=128, le=2048)
    aspect_ratio: Literal[ASPECT_RATIOS] | None = None  # type: ignore[valid-type]
    num_inference_steps: int | None = Field(None, ge=1, le=500)
    guidance_scale: float | None = Field(None, ge=0, le=50)
    negative_prompt: (
        Annotated[
            str,
            Field(
                max_length=MAX_PROMPT,
                json_schema_extra={"pattern": OPTIONAL_TEXT_PATTERN},
                description=f"Empty, or text: {_TEXT_RULES}.",
            ),
            BeforeValidator(_unify_newlines),
            AfterValidator(_check_optional_text),
        ]
        | None
    ) = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    output_format: Literal[OUTPUT_FORMATS] | None = None  # type: ignore[valid-type]
    output_quality: int | None = Field(None, ge=1, le=100)
    num_outputs: int | None = Field(None, ge=1, le=4)
    image: str | None = Field(
        None,
        min_length=1,
        description="A picture to start from: an upload id, the id of a media item of an "
        "earlier job, or a `data:image/png|jpeg|webp;base64,...` URI (at most "
        "`DARKROOM_MAX_UPLOAD_BYTES` decoded). Only for models that list `image` in `inputs`",
    )
    mask: str | None = Field(
        None,
        min_length=1,
        description="Where the picture may change (white) and must stay (black), given like "
        "`image`; scaled to the image when its size differs. Needs `image`",
    )
    prompt_strength: float | None = Field(
        None,
        ge=0,
        le=1,
        description="How far to move away from `image`: 0 keeps it, 1 ignores it (default 0.8)",
    )


class JobCreate(BaseModel):
    """The body of `POST /jobs/generate`."""

    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: Prompt
    model: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A model id from `GET /api/v1/models`; the default model if left out",
    )
    parameters: GenerationParameters | None = None
    webhook_url: (
        Annotated[
            str,
            Field(
                max_length=MAX_URL,
                json_schema_extra={"pattern": WEBHOOK_URL_PATTERN},
                description="Where the job's events are posted: an http(s) URL whose host "
                "resolves only to public addresses (checked now and before each delivery)",
            ),
            AfterValidator(_check_http_url),
        ]
        | None
    ) = None
    metadata: Annotated[dict[str, Any], AfterValidator(_check_metadata)] | None = Field(
        None, description=f"Any JSON object up to {MAX_METADATA_BYTES} bytes, echoed back as sent"
    )

    def requested_parameters(self) -> dict[str, Any]:
        """The parameters the client set, without the ones left out."""
        if self.parameters is None:
            return {}
        return self.parameters.model_dump(exclude_unset=True, exclude_none=True)


class JobListArgs(BaseModel):
    """The query string of `GET /jobs`."""

    # Unknown query keys are ignored: clients add cache busters.
    model_config = ConfigDict(extra="ignore")

    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(20, ge=1, le=100)
    status: Literal[tuple(s.value for s in JobStatus)] | None = None  # type: ignore[valid-type]


_SPEC_TYPES: dict[str, Any] = {"integer": int, "number": float, "string": str, "boolean": bool}


@functools.cache
def _model_parameters(model_id: str, params: tuple[ParamSpec, ...]) -> type[BaseModel]:
    """A pydantic model of one model's own parameters (those beyond the guide's)."""
    fields: dict[str, Any] = {}
    for param in params:
        if param.name in GenerationParameters.model_fields:
            continue
        kind: Any = Literal[param.choices] if param.choices else _SPEC_TYPES[param.type]
        fields[param.name] = (kind | None, Field(None, ge=param.minimum, le=param.maximum))
    config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    return create_model(f"Parameters_{model_id}", __config__=config, **fields)


def check_model_parameters(spec: ModelSpec, parameters: GenerationParameters | None) -> None:
    """Validate the keys beyond the guide's against the chosen model; raise `RequestInvalid`."""
    extra = (parameters.model_extra if parameters is not None else None) or {}
    if not extra:
        return
    try:
        _model_parameters(spec.id, spec.params).model_validate(extra)
    except ValidationError as exc:
        raise RequestInvalid(guide_errors(exc, "body", "parameters")) from exc


def guide_errors(exc: ValidationError, *location: str) -> list[dict[str, Any]]:
    """Turn pydantic's errors into the guide's list, prefixing `loc` with where they were."""
    return [
        error_item(
            _TYPE_NAMES.get(err["type"], err["type"]),
            [*location, *err["loc"]],
            err["msg"],
            err.get("input"),
        )
        for err in exc.errors(include_url=False, include_context=False)
    ]


def _json_safe(value: Any) -> Any:
    """Make an offending input representable in JSON (NaN and Infinity are not)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def parse_job_create(body: bytes) -> JobCreate:
    """Validate a raw JSON request body; raise `BodyNotJson` or `RequestInvalid`."""
    try:
        return JobCreate.model_validate_json(body)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BodyNotJson(exc.errors()[0]["msg"]) from exc
        raise RequestInvalid(guide_errors(exc, "body")) from exc


def parse_job_data(data: dict[str, Any]) -> JobCreate:
    """Validate an already-decoded request (the browser form); raise `RequestInvalid`."""
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid(guide_errors(exc, "body")) from exc


def parse_list_args(args: dict[str, Any]) -> JobListArgs:
    """Validate the query string of the job listing; raise `RequestInvalid`."""
    try:
        return JobListArgs.model_validate(args)
    except ValidationError as exc:
        raise RequestInvalid(guide_errors(exc, "query")) from exc


def check_webhook_url(url: str | None) -> None:
    """Refuse a webhook URL that points at a non-public address (422 at submission).

    A host that does not resolve right now is accepted: DNS may be down for a moment, and
    the same check runs again, authoritatively, before every delivery.
    """
    if not url:
        return
    allowed = netguard.parse_networks(current_app.config.get("WEBHOOK_ALLOWED_NETWORKS"))
    try:
        netguard.resolve(url, allowed)
    except netguard.UnresolvableURL:
        return
    except netguard.UnsafeURL as exc:
        raise invalid(
            "url_not_allowed", ["body", "webhook_url"], f"URL is not allowed: {exc}", url
        ) from exc
