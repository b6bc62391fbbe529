"""A fake Replicate API on loopback: real HTTP, predictions that run, log and expire.

`FakeReplicate` serves the routes Darkroom uses, with Replicate's JSON shapes:
- `POST /v1/models/{owner}/{name}/predictions` (official models) and `POST /v1/predictions`
  with a `version` (pinned versions), honouring `Prefer: wait=N`;
- `GET /v1/predictions/{id}` and `POST /v1/predictions/{id}/cancel`;
- `POST /v1/files` (multipart `content`, as the files API takes input files) and
  `GET /v1/files/{id}`; a model input of type "uri" must be a base64 `data:` URI or the
  `urls.get` of a file created here, holding a picture Pillow opens; the bytes it got are
  kept on the prediction (`Prediction.received`) for tests to compare;
- `GET /files/{id}/{name}`: the outputs, real images in the requested format and size,
  gone (404) once `output_ttl` has passed, as Replicate deletes them after an hour.

A prediction goes `starting` → `processing` (tqdm lines growing in its logs) → `succeeded`
or `failed` by the clock, or `canceled` when asked. Inputs are checked against each model's
schema (stricter than Replicate: unknown inputs are refused too, so a mapping mistake shows).
Answers: 401 for a wrong token, 404 for an unknown model or prediction, 422 with
`invalid_fields`. Faults are injected per route (`create`, `get`, `cancel`, `file`): an
error status (429 with Retry-After, 5xx, ...), a hang, or a plan for the next prediction
(fail it, serve other bytes or another size). Every request is recorded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageDraw

from tests.fake_http import FakeHandler, FakeServer, Fault, wait_until
from tests.fake_http import multipart as _multipart  # noqa: F401  (tests import it from here)

ASPECT = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
FLUX_SIZES = {
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
RUNNING = ("starting", "processing")
SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
FORMATS = {
    "png": ("PNG", "image/png"),
    "jpg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}

# Each model's input schema: name -> (JSON type, constraint) where the constraint is a tuple
# of choices or a (minimum, maximum) pair.
_FLUX_COMMON = {
    "prompt": ("string", None),
    "aspect_ratio": ("string", ASPECT),
    "seed": ("integer", None),
    "output_format": ("string", ("webp", "jpg", "png")),
    "output_quality": ("integer", (0, 100)),
    "num_outputs": ("integer", (1, 4)),
    "go_fast": ("boolean", None),
    "megapixels": ("string", ("1", "0.25")),
    "disable_safety_checker": ("boolean", None),
}
SCHEMAS: dict[str, dict[str, tuple[str, Any]]] = {
    "black-forest-labs/flux-schnell": {
        **_FLUX_COMMON,
        "num_inference_steps": ("integer", (1, 4)),
    },
    "black-forest-labs/flux-dev": {
        **_FLUX_COMMON,
        "num_inference_steps": ("integer", (1, 50)),
        "guidance": ("number", (0, 10)),
        "prompt_strength": ("number", (0, 1)),
        "image": ("uri", None),
    },
    "black-forest-labs/flux-kontext-pro": {
        "prompt": ("string", None),
        "input_image": ("uri", None),
        "aspect_ratio": ("string", ("match_input_image", *ASPECT, "2:1", "1:2")),
        "seed": ("integer", None),
        "output_format": ("string", ("jpg", "png")),
        "safety_tolerance": ("integer", (0, 6)),
        "prompt_upsampling": ("boolean", None),
    },
    "black-forest-labs/flux-1.1-pro": {
        "prompt": ("string", None),
        "aspect_ratio": ("string", ("custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16")),
        "width": ("integer", (256, 1440)),
        "height": ("integer", (256, 1440)),
        "seed": ("integer", None),
        "output_format": ("string", ("webp", "jpg", "png")),
        "output_quality": ("integer", (0, 100)),
        "safety_tolerance": ("integer", (1, 6)),
        "prompt_upsampling": ("boolean", None),
        "image_prompt": ("uri", None),
    },
    "stability-ai/sdxl": {
        "prompt": ("string", None),
        "negative_prompt": ("string", None),
        "width": ("integer", None),
        "height": ("integer", None),
        "num_outputs": ("integer", (1, 4)),
        "scheduler": (
            "string",
            (
                *("DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM"),
                *("K_EULER_ANCESTRAL", "K_EULER", "PNDM"),
            ),
        ),
        "num_inference_steps": ("integer", (1, 500)),
        "guidance_scale": ("number", (1, 50)),
        "seed": ("integer", None),
        "refine": ("string", ("no_refiner", "expert_ensemble_refiner", "base_image_refiner")),
        "high_noise_frac": ("number", (0, 1)),
        "apply_watermark": ("boolean", None),
        "image": ("uri", None),
        "mask": ("uri", None),
        "prompt_strength": ("number", (0, 1)),
    },
}
VERSIONS = {SDXL_VERSION: "stability-ai/sdxl"}
STRING_OUTPUT = {"black-forest-labs/flux-1.1-pro", "black-forest-labs/flux-kontext-pro"}


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


@dataclass
class Plan:
    """How the next created prediction will go."""

    error: str | None = None  # fail with this error instead of succeeding
    output_bytes: bytes | None = None  # serve these bytes as every output file
    output_size: tuple[int, int] | None = None  # render outputs at this size instead
    run_seconds: float | None = None  # processing time instead of the fake's default


@dataclass
class Prediction:
    """One prediction and its clock."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    created: float
    started: float
    finishes: float
    plan: Plan
    steps: int
    canceled: float | None = None
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    received: dict[str, bytes] = field(default_factory=dict)  # uri inputs, by input name

    def status_at(self, now: float) -> str:
        if self.canceled is not None:
            return "canceled"
        if now < self.started:
            return "starting"
        if now < self.finishes:
            return "processing"
        return "failed" if self.plan.error else "succeeded"

    def ended_at(self) -> float | None:
        return self.canceled if self.canceled is not None else self.finishes


@dataclass
class UploadedFile:
    """A file created through the files API."""

    id: str
    name: str
    content_type: str
    data: bytes
    created: float


@dataclass
class Recorded:
    """A request the fake received."""

    method: str
    path: str
    route: str
    authorization: str | None
    prefer: str | None
    body: Any


class FakeReplicate(FakeServer[Recorded]):
    """A Replicate API on 127.0.0.1 for tests; start() it, point REPLICATE_BASE_URL at .url."""

    def __init__(
        self,
        token: str,
        *,
        start_seconds: float = 0.02,
        run_seconds: float = 0.08,
        output_ttl: float = 3600.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.start_seconds, self.run_seconds, self.output_ttl = (
            start_seconds,
            run_seconds,
            output_ttl,
        )
        self.predictions: dict[str, Prediction] = {}
        self.files: dict[str, UploadedFile] = {}
        self.plans: list[Plan] = []
        self.serve(_Handler)

    def settings(self) -> dict[str, Any]:
        """App settings that send Replicate's models here, with short timeouts."""
        return {
            "REPLICATE_API_TOKEN": self.token,
            "REPLICATE_BASE_URL": self.url,
            "REPLICATE_POLL_SECONDS": 0.01,
            "REPLICATE_CONNECT_TIMEOUT": 1.0,
            "REPLICATE_READ_TIMEOUT": 1.0,
        }

    # -- knobs ----------------------------------------------------------------------------

    def fail(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` requests of a route with an error status."""
        self.add_fault(Fault(route, status, times, retry_after=retry_after, body=body))

    def plan_next(self, **plan: Any) -> None:
        """Decide how the next created prediction goes (see `Plan`)."""
        with self.lock:
            self.plans.append(Plan(**plan))

    def expire_outputs(self) -> None:
        """Age every prediction past the output TTL, as an hour later upstream."""
        with self.lock:
            for p in self.predictions.values():
                shift = self.output_ttl + 1
                p.created -= shift
                p.started -= shift
                p.finishes -= shift

    # -- what happened --------------------------------------------------------------------

    @property
    def created(self) -> list[Prediction]:
        """Predictions created, in order."""
        with self.lock:
            return sorted(self.predictions.values(), key=lambda p: p.created)

    def status_of(self, prediction_id: str) -> str:
        with self.lock:
            return self.predictions[prediction_id].status_at(time.time())

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll `check` until it returns something true: predictions move by the clock,
        so no change is announced to wait on."""
        return wait_until(what, check, timeout)

    # -- behaviour, called by the handler -------------------------------------------------

    def create(
        self,
        model: str,
        version: str,
        model_input: dict[str, Any],
        received: dict[str, bytes] | None = None,
    ) -> Prediction:
        now = time.time()
        with self.lock:
            plan = self.plans.pop(0) if self.plans else Plan()
            run = self.run_seconds if plan.run_seconds is None else plan.run_seconds
            prediction = Prediction(
                id=_prediction_id(),
                model=model,
                version=version,
                input=model_input,
                created=now,
                started=now + self.start_seconds,
                finishes=now + self.start_seconds + run,
                plan=plan,
                steps=int(model_input.get("num_inference_steps") or 28),
                received=received or {},
            )
            self.predictions[prediction.id] = prediction
        return prediction

    def find(self, prediction_id: str) -> Prediction | None:
        with self.lock:
            return self.predictions.get(prediction_id)

    def cancel(self, prediction: Prediction) -> None:
        with self.lock:
            if prediction.status_at(time.time()) in ("starting", "processing"):
                prediction.canceled = time.time()

    def expired(self, prediction: Prediction, now: float) -> bool:
        ended = prediction.ended_at()
        return (
            prediction.status_at(now) == "succeeded"
            and ended is not None
            and now > ended + self.output_ttl
        )

    def to_json(self, prediction: Prediction) -> dict[str, Any]:
        """The prediction as Replicate's API shows it right now."""
        now = time.time()
        status = prediction.status_at(now)
        done = status in ("succeeded", "failed", "canceled")
        removed = self.expired(prediction, now)
        output: Any = None
        if status == "succeeded" and not removed:
            names = self.render(prediction)
            urls = [f"{self.url}/files/{prediction.id}/{name}" for name in names]
            output = urls[0] if prediction.model in STRING_OUTPUT else urls
        ended = prediction.ended_at() if done else None
        base = f"{self.url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "input": {} if removed else prediction.input,
            "logs": "" if removed else self.logs(prediction, now, status),
            "output": output,
            "data_removed": removed,
            "error": prediction.plan.error if status == "failed" else None,
            "status": status,
            "created_at": _iso(prediction.created),
            "started_at": _iso(prediction.started) if status != "starting" else None,
            "completed_at": _iso(ended),
            "urls": {
                "get": base,
                "cancel": f"{base}/cancel",
                "web": f"https://replicate.com/p/{prediction.id}",
            },
            "metrics": (
                {
                    "predict_time": round(ended - prediction.started, 6),
                    "total_time": round(ended - prediction.created, 6),
                }
                if ended is not None and ended >= prediction.started
                else {}
            ),
        }

    def logs(self, prediction: Prediction, now: float, status: str) -> str:
        """Logs as a cog model prints them: a seed line, then a growing tqdm bar."""
        if status == "starting":
            return ""
        lines = [f"Using seed: {prediction.input.get('seed', 0)}"]
        run = max(1e-9, prediction.finishes - prediction.started)
        until = min(now, prediction.ended_at() or now)
        done = max(0.0, min(1.0, (until - prediction.started) / run))
        total = prediction.steps
        for step in range(int(done * total) + 1):
            lines.append(_tqdm(step, total, elapsed=step * run / total))
        if status == "failed":
            lines += [
                "Traceback (most recent call last):",
                f"RuntimeError: {prediction.plan.error}",
            ]
        elif status == "succeeded":
            lines.append(
                f"Total safe images: {self._count(prediction)} out of {self._count(prediction)}"
            )
        return "\n".join(lines) + "\n"

    def _count(self, prediction: Prediction) -> int:
        return (
            1 if prediction.model in STRING_OUTPUT else int(prediction.input.get("num_outputs", 1))
        )

    def render(self, prediction: Prediction) -> list[str]:
        """Draw the outputs once (real images at the model's size, in its format)."""
        with self.lock:
            if prediction.files:
                return list(prediction.files)
            inp = prediction.input
            fmt = (
                "png"
                if prediction.model == "stability-ai/sdxl"
                else inp.get("output_format", "webp")
            )
            size = prediction.plan.output_size or _render_size(
                prediction.model, inp, prediction.received.get("input_image")
            )
            pil_format, mime = FORMATS[fmt]
            for index in range(self._count(prediction)):
                name = f"out-{index}.{fmt}"
                if prediction.plan.output_bytes is not None:
                    data = prediction.plan.output_bytes
                else:
                    data = _picture(
                        size,
                        int(inp.get("seed", 0)) + index,
                        pil_format,
                        int(inp.get("output_quality", 80)),
                    )
                prediction.files[name] = (data, mime)
            return list(prediction.files)

    def add_file(self, name: str, content_type: str, data: bytes) -> UploadedFile:
        with self.lock:
            uploaded = UploadedFile(_prediction_id(), name, content_type, data, time.time())
            self.files[uploaded.id] = uploaded
            return uploaded

    def file_json(self, uploaded: UploadedFile) -> dict[str, Any]:
        """A file as the files API shows it."""
        return {
            "id": uploaded.id,
            "name": uploaded.name,
            "content_type": uploaded.content_type,
            "size": len(uploaded.data),
            "etag": hashlib.md5(uploaded.data).hexdigest(),
            "checksums": {
                "sha256": hashlib.sha256(uploaded.data).hexdigest(),
                "md5": hashlib.md5(uploaded.data).hexdigest(),
            },
            "metadata": {},
            "created_at": _iso(uploaded.created),
            "expires_at": _iso(uploaded.created + 86400),
            "urls": {"get": f"{self.url}/v1/files/{uploaded.id}"},
        }

    def read_uri(self, value: str) -> bytes | None:
        """The bytes a "uri" input names: a base64 data URI, or a file created here."""
        if value.startswith("data:"):
            header, _, payload = value.partition(",")
            if not header.endswith(";base64"):
                return None
            try:
                return base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return None
        prefix = f"{self.url}/v1/files/"
        if value.startswith(prefix):
            with self.lock:
                uploaded = self.files.get(value.removeprefix(prefix))
            return uploaded.data if uploaded else None
        return None

    def received_uris(self, model: str, model_input: dict[str, Any]) -> dict[str, bytes]:
        """The bytes of each "uri" input (after `check_input` accepted them)."""
        schema = SCHEMAS[model]
        return {
            name: self.read_uri(value) or b""
            for name, value in model_input.items()
            if schema.get(name, (None,))[0] == "uri"
        }

    def check_input(self, model: str, model_input: Any) -> list[dict[str, str]]:
        """Replicate-style invalid_fields for an input that does not fit the model's schema."""
        if not isinstance(model_input, dict):
            return [_invalid("type", "input", "input must be an object")]
        schema = SCHEMAS[model]
        problems = []
        if not isinstance(model_input.get("prompt"), str):
            problems.append(_invalid("required", "input.prompt", "prompt is required"))
        for name, value in model_input.items():
            where = f"input.{name}"
            kind, rule = schema.get(name, (None, None))
            if kind is None:
                problems.append(_invalid("additional_property_not_allowed", where, name))
            elif not _is_type(value, kind):
                problems.append(_invalid("invalid_type", where, f"Expected: {kind}"))
            elif kind == "uri" and not _is_picture(self.read_uri(value)):
                problems.append(_invalid("format", where, "Does not match format 'uri'"))
            elif kind == "string" and rule and value not in rule:
                choices = ", ".join(f"'{c}'" for c in rule)
                problems.append(_invalid("enum", where, f"{name} must be one of: {choices}"))
            elif kind != "string" and rule and not rule[0] <= value <= rule[1]:
                problems.append(_invalid("range", where, f"Must be {rule[0]} to {rule[1]}"))
        return problems


def _invalid(kind: str, where: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": where, "description": description}


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An error body as Replicate sends it (RFC 7807 problem details)."""
    return {"title": title, "detail": detail, "status": status, **extra}


NOT_FOUND = problem(404, "Not found", "The requested resource could not be found.")
TITLES = {
    401: "Unauthenticated",
    402: "Payment required",
    404: "Not found",
    422: "Input validation failed",
    429: "Request was throttled.",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "uri":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _is_picture(data: bytes | None) -> bool:
    if not data:
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:
        return False
    return True


def _render_size(
    model: str, inp: dict[str, Any], input_image: bytes | None = None
) -> tuple[int, int]:
    if model == "stability-ai/sdxl":
        return int(inp.get("width", 1024)), int(inp.get("height", 1024))
    ratio = inp.get("aspect_ratio", "1:1")
    if ratio == "match_input_image" and input_image:
        with Image.open(io.BytesIO(input_image)) as image:
            return image.size
    if ratio in ("match_input_image", "2:1", "1:2"):
        return {"2:1": (1408, 704), "1:2": (704, 1408)}.get(ratio, (1024, 1024))
    if ratio == "custom":
        return (
            round(int(inp.get("width", 1024)) / 32) * 32,
            round(int(inp.get("height", 1024)) / 32) * 32,
        )
    width, height = FLUX_SIZES[ratio]
    if inp.get("megapixels") == "0.25":
        width, height = round(width / 32) * 16, round(height / 32) * 16
    return width, height


def _picture(size: tuple[int, int], seed: int, pil_format: str, quality: int) -> bytes:
    """A real picture that differs by seed, with a centred mark to check crops against."""
    width, height = size
    colour = ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256)
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.4, height * 0.4, width * 0.6, height * 0.6), fill=(255, 255, 255))
    buffer = io.BytesIO()
    options = {} if pil_format == "PNG" else {"quality": quality}
    image.save(buffer, pil_format, **options)
    return buffer.getvalue()


def _tqdm(step: int, total: int, elapsed: float) -> str:
    """One tqdm progress line, e.g. ` 45%|████▌     | 9/20 [00:02<00:02, 4.10it/s]`."""
    fraction = step / total if total else 1.0
    filled = int(fraction * 10)
    bar = "█" * filled + ("▌" if fraction * 10 - filled >= 0.5 and filled < 10 else "")
    rate = step / elapsed if elapsed > 0 else 0.0
    return f"{int(fraction * 100):3d}%|{bar:<10}| {step}/{total} [00:00<00:00, {rate:.2f}it/s]"


def _prediction_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(26))


_PREDICTION = re.compile(r"^/v1/predictions/([a-z0-9]+)(/cancel)?$")
_OFFICIAL = re.compile(r"^/v1/models/([^/]+)/([^/]+)/predictions$")
_FILE = re.compile(r"^/files/([a-z0-9]+)/([\w.-]+)$")
_FILE_INFO = re.compile(r"^/v1/files/([a-z0-9]+)$")


class _Handler(FakeHandler):
    @property
    def fake(self) -> FakeReplicate:
        return self.server.fake  # type: ignore[attr-defined]

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        path = self.path.split("?")[0]
        route = _route(method, path)
        headers = self.headers
        self.fake.record(
            Recorded(method, path, route, headers.get("Authorization"), headers.get("Prefer"), body)
        )
        fault = self.fake.take_fault(route)
        if self.fake.delayed(fault):
            return  # the fake is stopping
        if fault is not None and fault.status:
            self._fault(fault)
        elif route == "file":
            self._file(path)
        elif headers.get("Authorization") not in (f"Bearer {self.fake.token}",):
            self._json(
                401, problem(401, TITLES[401], "You did not pass a valid authentication token")
            )
        elif route == "create":
            self._create(path, body)
        elif route in ("get", "cancel"):
            self._prediction(path, route)
        elif route == "upload":
            self._upload(body)
        elif route == "file_info":
            self._file_info(path)
        else:
            self._json(404, NOT_FOUND)

    def _fault(self, fault: Fault) -> None:
        title = TITLES.get(fault.status, "Error")
        detail = title
        if fault.status == 429:
            detail = (
                f"Request was throttled. Expected available in {fault.retry_after or 1} second."
            )
        body = fault.body or problem(fault.status, title, detail)
        headers = {"Retry_After": fault.retry_after} if fault.retry_after else {}
        self._json(fault.status, body, **headers)

    def _create(self, path: str, body: Any) -> None:
        if not isinstance(body, dict):
            return self._json(400, problem(400, "Bad request", "Body must be a JSON object"))
        official = _OFFICIAL.match(path)
        if official:
            model, version = f"{official[1]}/{official[2]}", "hidden"
            if model not in SCHEMAS or model in VERSIONS.values():
                return self._json(404, NOT_FOUND)
        else:
            version = str(body.get("version", ""))
            model = VERSIONS.get(version.rpartition(":")[2], "")
            if not model:
                return self._json(422, problem(422, "Invalid version", "Invalid version"))
        problems = self.fake.check_input(model, body.get("input"))
        if problems:
            detail = "\n".join(f"- {p['field']}: {p['description']}" for p in problems)
            return self._json(422, problem(422, TITLES[422], detail, invalid_fields=problems))
        model_input = dict(body["input"])
        received = self.fake.received_uris(model, model_input)
        prediction = self.fake.create(model, version, model_input, received)
        deadline = time.time() + _wait_seconds(self.headers.get("Prefer"))
        while time.time() < deadline and prediction.status_at(time.time()) in RUNNING:
            if self.fake.closing.wait(0.005):
                return
        self._json(201, self.fake.to_json(prediction))

    def _prediction(self, path: str, route: str) -> None:
        match = _PREDICTION.match(path)
        prediction = self.fake.find(match[1]) if match else None
        if prediction is None:
            return self._json(404, NOT_FOUND)
        if route == "cancel":
            self.fake.cancel(prediction)
        self._json(200, self.fake.to_json(prediction))

    def _upload(self, body: Any) -> None:
        part = body.get("content") if isinstance(body, dict) else None
        if part is None:
            return self._json(400, problem(400, "Bad request", "The `content` field is missing"))
        name, content_type, data = part
        uploaded = self.fake.add_file(name or "file", content_type, data)
        self._json(201, self.fake.file_json(uploaded))

    def _file_info(self, path: str) -> None:
        match = _FILE_INFO.match(path)
        with self.fake.lock:
            uploaded = self.fake.files.get(match[1]) if match else None
        if uploaded is None:
            return self._json(404, NOT_FOUND)
        self._json(200, self.fake.file_json(uploaded))

    def _file(self, path: str) -> None:
        match = _FILE.match(path)
        prediction = self.fake.find(match[1]) if match else None
        if prediction is None or self.fake.expired(prediction, time.time()):
            return self._json(404, {"detail": "Not found"})
        entry = prediction.files.get(match[2])
        if entry is None:
            return self._json(404, {"detail": "Not found"})
        self._send(200, entry[0], entry[1])


def _route(method: str, path: str) -> str:
    """Which of the fake's routes a request is for ("?" for none)."""
    if method == "POST" and (path == "/v1/predictions" or _OFFICIAL.match(path)):
        return "create"
    match = _PREDICTION.match(path)
    if match and method == ("POST" if match[2] else "GET"):
        return "cancel" if match[2] else "get"
    if method == "GET" and _FILE.match(path):
        return "file"
    if method == "POST" and path == "/v1/files":
        return "upload"
    if method == "GET" and _FILE_INFO.match(path):
        return "file_info"
    return "?"


def _wait_seconds(prefer: str | None) -> float:
    """Seconds asked by `Prefer: wait` (bare `wait` means Replicate's 60)."""
    if not prefer:
        return 0.0
    match = re.search(r"\bwait(?:=(\d+))?", prefer)
    if not match:
        return 0.0
    return float(match[1] or 60)
