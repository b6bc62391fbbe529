"""A fake AUTOMATIC1111 / Forge API on loopback: real HTTP, runs that take their time.

`FakeA1111` serves the routes Darkroom uses, with the shapes of A1111 1.10 and Forge:
- `GET /sdapi/v1/sd-models` ([{title, model_name, hash, sha256, filename, config}]),
  `/samplers` ([{name, aliases, options}]) and `/schedulers` ([{name, label, ...}]; 404
  when built with `schedulers=None`, as servers older than 1.9 answer);
- `POST /sdapi/v1/txt2img` and `/img2img`: one run at a time, the others wait their turn
  (A1111's queue lock); a run steps through its `steps` at `step_seconds` each, then
  answers {images: [base64 PNG...], parameters, info: a JSON *string* with seed,
  all_seeds, index_of_first_image...}. Pictures are the size asked truncated to 8-pixel
  blocks, as A1111 renders them. `force_task_id` names the run, as in the real one;
- `GET /sdapi/v1/progress?skip_current_image=...`: {progress, eta_relative, state,
  current_image (a base64 PNG that changes each step), textinfo, current_task}; with
  `reports_task=False` there is no `current_task`, as before A1111 1.6;
- `POST /sdapi/v1/interrupt`: the running run stops at its next step and answers with what
  it has, as A1111 does (a run waiting its turn is not touched).

Bodies are checked more strictly than A1111 does (it ignores unknown keys), so a mapping
mistake shows: an unknown key or a wrong type is a 422 in FastAPI's shape, an unknown
sampler 404 "Sampler not found", an unknown checkpoint 500 "model '...' not found", a
picture that is not a base64 image 500 "Invalid encoded image". With `auth` every route
wants HTTP Basic (401 otherwise, as with `--api-auth`). Faults are injected per route (an
error status, a hang) and for the next run (`die_at_step`: the whole server goes away,
every connection dropped, as when its process is killed); `stop()` does that at any time,
and a new fake can take the same port afterwards (the server back from the dead). Every
request is recorded; `wait_for` waits on the fake's own changes, not on a clock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import random
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw

from tests.fake_http import FakeHandler, FakeServer, Fault, json_or_raw
from tests.fake_http import wait_until as wait_until  # tests import it from here

SAMPLERS = ("DPM++ 2M", "Euler a", "Euler", "DDIM", "UniPC")
SCHEDULERS = ("automatic", "uniform", "karras", "exponential", "sgm_uniform")
CHECKPOINTS = ("v1-5-pruned-emaonly", "sd_xl_base_1.0")

# The body keys of A1111 1.10's API models and their JSON types ("number" takes integers).
_COMMON = {
    "prompt": "string", "negative_prompt": "string", "styles": "list", "seed": "integer",
    "subseed": "integer", "subseed_strength": "number", "seed_resize_from_h": "integer",
    "seed_resize_from_w": "integer", "sampler_name": "string", "scheduler": "string",
    "batch_size": "integer", "n_iter": "integer", "steps": "integer", "cfg_scale": "number",
    "width": "integer", "height": "integer", "restore_faces": "boolean", "tiling": "boolean",
    "do_not_save_samples": "boolean", "do_not_save_grid": "boolean", "eta": "number",
    "denoising_strength": "number", "s_min_uncond": "number", "s_churn": "number",
    "s_tmax": "number", "s_tmin": "number", "s_noise": "number", "override_settings": "object",
    "override_settings_restore_afterwards": "boolean", "refiner_checkpoint": "string",
    "refiner_switch_at": "number", "disable_extra_networks": "boolean", "comments": "object",
    "sampler_index": "string", "script_name": "string", "script_args": "list",
    "send_images": "boolean", "save_images": "boolean", "alwayson_scripts": "object",
    "force_task_id": "string", "infotext": "string",
}  # fmt: skip
FIELDS = {
    "txt2img": {
        **_COMMON,
        "enable_hr": "boolean", "firstphase_width": "integer", "firstphase_height": "integer",
        "hr_scale": "number", "hr_upscaler": "string", "hr_second_pass_steps": "integer",
        "hr_resize_x": "integer", "hr_resize_y": "integer", "hr_checkpoint_name": "string",
        "hr_sampler_name": "string", "hr_scheduler": "string", "hr_prompt": "string",
        "hr_negative_prompt": "string", "firstpass_image": "string",
    },
    "img2img": {
        **_COMMON,
        "init_images": "list", "resize_mode": "integer", "image_cfg_scale": "number",
        "mask": "string", "mask_blur_x": "integer", "mask_blur_y": "integer",
        "mask_blur": "integer", "mask_round": "boolean", "inpainting_fill": "integer",
        "inpaint_full_res": "boolean", "inpaint_full_res_padding": "integer",
        "inpainting_mask_invert": "integer", "initial_noise_multiplier": "number",
        "latent_mask": "string", "include_init_images": "boolean",
    },
}  # fmt: skip
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "object": (dict,),
}
ROUTES = {
    ("GET", "/sdapi/v1/sd-models"): "sd-models",
    ("GET", "/sdapi/v1/samplers"): "samplers",
    ("GET", "/sdapi/v1/schedulers"): "schedulers",
    ("POST", "/sdapi/v1/txt2img"): "txt2img",
    ("POST", "/sdapi/v1/img2img"): "img2img",
    ("GET", "/sdapi/v1/progress"): "progress",
    ("POST", "/sdapi/v1/interrupt"): "interrupt",
}


def _error(error: str, detail: str, errors: str) -> dict[str, Any]:
    """An error answer as A1111's exception handler writes it."""
    return {"error": error, "detail": detail, "body": "", "errors": errors}


def _http_error(status: int, detail: str) -> dict[str, Any]:
    """A1111's answer for an `HTTPException` it raised."""
    return _error("HTTPException", detail, f"{status}: {detail}")


def _invalid(loc: list[str], kind: str) -> dict[str, Any]:
    """One of FastAPI's (pydantic 1) validation errors."""
    if kind == "extra":
        return {"loc": loc, "msg": "extra fields not permitted", "type": "value_error.extra"}
    return {"loc": loc, "msg": f"value is not a valid {kind}", "type": f"type_error.{kind}"}


def _sampler(name: str) -> dict[str, Any]:
    return {"name": name, "aliases": [name.lower().replace(" ", "_")], "options": {}}


def _scheduler(name: str) -> dict[str, Any]:
    label = name.replace("_", " ").title()
    return {"name": name, "label": label, "aliases": None, "default_rho": -1.0}


OUT_OF_MEMORY = _error("OutOfMemoryError", "", "CUDA out of memory. Tried to allocate 2.00 GiB")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file of the server."""

    model_name: str
    hash: str | None = None  # A1111 computes the short hash lazily; None until then

    @property
    def filename(self) -> str:
        return f"/models/Stable-diffusion/{self.model_name}.safetensors"

    @property
    def title(self) -> str:
        name = f"{self.model_name}.safetensors"
        return f"{name} [{self.hash}]" if self.hash else name

    def aliases(self) -> set[str]:
        """What `sd_model_checkpoint` may name it by (A1111's `checkpoint_aliases`)."""
        found = {self.title, self.model_name, f"{self.model_name}.safetensors"}
        return found | ({self.hash} if self.hash else set())

    def as_json(self) -> dict[str, Any]:
        sha = hashlib.sha256(self.model_name.encode()).hexdigest() if self.hash else None
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.hash,
            "sha256": sha,
            "filename": self.filename,
            "config": None,
        }


@dataclass
class Plan:
    """How the next run goes."""

    die_at_step: int | None = None  # the whole server goes away at this step
    hold_at_step: int | None = None  # the run waits at this step until `release()`
    images: list[str] | None = None  # answer these base64 strings instead of pictures


@dataclass
class Run:
    """One txt2img or img2img request and how far it got."""

    task_id: str
    kind: str
    body: dict[str, Any]
    steps: int
    seed: int
    plan: Plan
    received: dict[str, bytes] = field(default_factory=dict)  # decoded init image, mask
    state: str = "queued"  # queued → running → done
    step: int = 0
    interrupted: bool = False
    released: bool = False


@dataclass
class Recorded:
    """A request the fake received."""

    method: str
    path: str
    route: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


class FakeA1111(FakeServer[Recorded]):
    """An AUTOMATIC1111 API on 127.0.0.1 for tests; start() it, point the setting at .url."""

    def __init__(
        self,
        *,
        checkpoints: tuple[str, ...] = CHECKPOINTS,
        samplers: tuple[str, ...] = SAMPLERS,
        schedulers: tuple[str, ...] | None = SCHEDULERS,
        auth: tuple[str, str] | None = None,
        step_seconds: float = 0.01,
        reports_task: bool = True,
        port: int = 0,
    ) -> None:
        super().__init__()
        self.checkpoints = [
            Checkpoint(n, hashlib.sha256(n.encode()).hexdigest()[:10]) for n in checkpoints
        ]
        self.samplers, self.schedulers = samplers, schedulers
        self.auth, self.step_seconds, self.reports_task = auth, step_seconds, reports_task
        self.plans: list[Plan] = []
        self.runs: list[Run] = []
        self.current: Run | None = None
        self.last: Run | None = None  # A1111's state keeps the last run's flags until the next
        self.job_timestamp = "0"
        self.connections: set[socket.socket] = set()
        self.serve(_Handler, port)

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Go away as a killed server does: refuse new connections, drop every open one."""
        super().stop()
        with self.changed:
            open_ones = list(self.connections)
        for sock in open_ones:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- knobs ----------------------------------------------------------------------------

    def plan_next(self, **plan: Any) -> None:
        """Decide how the next run goes (see `Plan`)."""
        with self.changed:
            self.plans.append(Plan(**plan))

    # -- what happened --------------------------------------------------------------------

    def running(self) -> Run | None:
        """The run on the server's GPU right now."""
        with self.changed:
            return self.current

    # -- behaviour, called by the handler -------------------------------------------------

    def checkpoint(self, name: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if name in c.aliases()), None)

    def add_run(self, kind: str, body: dict[str, Any], received: dict[str, bytes]) -> Run:
        seed = int(body.get("seed", -1))
        with self.changed:
            run = Run(
                task_id=str(body.get("force_task_id") or f"task({kind}-{len(self.runs)})"),
                kind=kind,
                body=body,
                steps=max(1, int(body.get("steps", 20))),
                seed=seed if seed >= 0 else random.randrange(2**32),
                plan=self.plans.pop(0) if self.plans else Plan(),
                received=received,
            )
            self.runs.append(run)
            self.changed.notify_all()
        return run

    def execute(self, run: Run) -> bool:
        """Wait for the server's turn, then step through the run; False if the server
        went away meanwhile (the request is dropped, never answered)."""

        def my_turn() -> bool:
            waiting = next((r for r in self.runs if r.state == "queued"), None)
            return self.closing.is_set() or (self.current is None and waiting is run)

        with self.changed:
            self.changed.wait_for(my_turn)
            if self.closing.is_set():
                return False
            self.current, run.state = run, "running"
            self.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
            self.changed.notify_all()
        for step in range(1, run.steps + 1):
            if self.closing.wait(self.step_seconds):
                return False
            with self.changed:
                if run.interrupted:
                    break
                run.step = step
                self.changed.notify_all()
            if run.plan.die_at_step == step:
                self.stop()
                return False
            if run.plan.hold_at_step == step:
                with self.changed:
                    self.changed.wait_for(
                        lambda: self.closing.is_set() or run.released or run.interrupted
                    )
        with self.changed:
            run.state, self.current, self.last = "done", None, run
            self.changed.notify_all()
        return True

    def release(self) -> None:
        """Let every held run go on."""
        with self.changed:
            for run in self.runs:
                run.released = True
            self.changed.notify_all()

    def interrupt(self) -> None:
        with self.changed:
            if self.current is not None:
                self.current.interrupted = True
                self.changed.notify_all()

    def progress(self, with_image: bool) -> dict[str, Any]:
        """`/sdapi/v1/progress` right now."""
        with self.changed:
            run = self.current
            if run is None:
                body: dict[str, Any] = {
                    "progress": 0.0,
                    "eta_relative": 0.0,
                    "state": self._state(self.last, idle=True),
                    "current_image": None,
                    "textinfo": None,
                }
            else:
                done = min(1.0, 0.01 + run.step / run.steps)
                body = {
                    "progress": done,
                    "eta_relative": (run.steps - run.step) * self.step_seconds,
                    "state": self._state(run),
                    "current_image": (_preview(run) if with_image and run.step > 0 else None),
                    "textinfo": None,
                }
            if self.reports_task:
                body["current_task"] = run.task_id if run is not None else None
            return body

    def _state(self, run: Run | None, idle: bool = False) -> dict[str, Any]:
        return {
            "skipped": False,
            "interrupted": bool(run and run.interrupted),
            "stopping_generation": False,
            "job": f"scripts_{run.kind}" if run and not idle else "",
            "job_count": 1 if run and not idle else 0,
            "job_timestamp": self.job_timestamp,
            "job_no": 0,
            "sampling_step": run.step if run else 0,
            "sampling_steps": run.steps if run else 0,
        }

    def answer(self, run: Run) -> dict[str, Any]:
        """What a finished run answers."""
        body = run.body
        count = int(body.get("batch_size", 1))
        width, height = int(body.get("width", 512)), int(body.get("height", 512))
        asked = (body.get("override_settings") or {}).get("sd_model_checkpoint", "")
        checkpoint = self.checkpoint(str(asked)) or self.checkpoints[0]
        seeds = [run.seed + i for i in range(count)]
        images = run.plan.images
        if images is None:
            images = [_picture(width // 8 * 8, height // 8 * 8, seed) for seed in seeds]
        info_prompt = body.get("prompt", "")
        info = {
            "prompt": info_prompt,
            "all_prompts": [body.get("prompt", "")] * count,
            "negative_prompt": body.get("negative_prompt", ""),
            "seed": run.seed,
            "all_seeds": seeds,
            "subseed": 0,
            "all_subseeds": [0] * count,
            "width": width,
            "height": height,
            "sampler_name": body.get("sampler_name", "DPM++ 2M"),
            "cfg_scale": body.get("cfg_scale", 7.0),
            "steps": run.steps,
            "batch_size": count,
            "sd_model_name": checkpoint.model_name,
            "sd_model_hash": checkpoint.hash,
            "denoising_strength": body.get("denoising_strength"),
            "index_of_first_image": 0,
            "job_timestamp": self.job_timestamp,
            "infotexts": [
                f"{body.get('prompt', '')}\nSteps: {run.steps}, Seed: {s}" for s in seeds
            ],
            "version": "v1.10.1",
        }
        parameters = {k: v for k, v in body.items() if k not in ("init_images", "mask")}
        return {"images": images, "parameters": parameters, "info": json.dumps(info)}

    def check(self, kind: str, body: Any) -> tuple[int, Any] | None:
        """The error answer a body earns, if any (see the module's docstring)."""
        if not isinstance(body, dict):
            return 422, {"detail": [_invalid(["body"], "dict")]}
        problems = []
        for key, value in body.items():
            kind_of = FIELDS[kind].get(key)
            if kind_of is None:
                problems.append(_invalid(["body", key], "extra"))
            elif not isinstance(value, _JSON_TYPES[kind_of]) or (
                kind_of in ("integer", "number") and isinstance(value, bool)
            ):
                problems.append(_invalid(["body", key], kind_of))
        if problems:
            return 422, {"detail": problems}
        name = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        if name is not None and self.checkpoint(str(name)) is None:
            return 500, _error("RuntimeError", "", f"model {name!r} not found")
        sampler = body.get("sampler_name")
        if sampler is not None and sampler not in self.samplers:
            return 404, _http_error(404, "Sampler not found")
        if kind == "img2img" and not body.get("init_images"):
            return 404, _http_error(404, "Init image not found")
        return None


def _short_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:10]


def _picture(width: int, height: int, seed: int) -> str:
    """A real PNG of the size, drawn from the seed, as base64."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(250, 250, 250))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _preview(run: Run) -> str:
    """A live preview: a small PNG whose shade follows the step."""
    width, height = int(run.body.get("width", 512)), int(run.body.get("height", 512))
    shade = int(255 * run.step / run.steps)
    image = Image.new("RGB", (max(8, width // 8), max(8, height // 8)), (shade, 64, 255 - shade))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_bytes(value: Any) -> bytes | None:
    """The bytes of a base64 picture (plain, or a data URI as A1111 also takes)."""
    if not isinstance(value, str):
        return None
    if value.startswith("data:image/"):
        value = value.split(";")[1].split(",")[1]
    try:
        data = base64.b64decode(value, validate=True)
        Image.open(io.BytesIO(data)).verify()
    except (binascii.Error, ValueError, OSError, IndexError):
        return None
    return data


class _Handler(FakeHandler):
    @property
    def fake(self) -> FakeA1111:
        return self.server.fake  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.fake.changed:
            self.fake.connections.add(self.connection)

    def finish(self) -> None:
        with self.fake.changed:
            self.fake.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _dispatch(self, method: str) -> None:
        body = json_or_raw(self._read_raw())  # JSON only: A1111's API takes no multipart
        parts = urlsplit(self.path)
        route = ROUTES.get((method, parts.path), "?")
        query, authorization = parse_qs(parts.query), self.headers.get("Authorization")
        self.fake.record(Recorded(method, parts.path, route, query, authorization, body))
        if self.fake.closing.is_set():
            return self._drop()
        fault = self.fake.take_fault(route)
        if self.fake.delayed(fault):
            return self._drop()
        refusal = self._refused_credentials()
        if refusal is not None:
            self._json(401, refusal, WWW_Authenticate="Basic")
        elif fault is not None and fault.status:
            self._fault(fault)
        elif route == "sd-models":
            self._json(200, [c.as_json() for c in self.fake.checkpoints])
        elif route == "samplers":
            self._json(200, [_sampler(name) for name in self.fake.samplers])
        elif route == "schedulers" and self.fake.schedulers is not None:
            self._json(200, [_scheduler(name) for name in self.fake.schedulers])
        elif route in ("txt2img", "img2img"):
            self._run(route, body)
        elif route == "progress":
            skip = parse_qs(parts.query).get("skip_current_image", ["false"])[0] == "true"
            self._json(200, self.fake.progress(with_image=not skip))
        elif route == "interrupt":
            self.fake.interrupt()
            self._json(200, {})
        else:
            self._json(404, {"detail": "Not Found"})

    def _refused_credentials(self) -> dict[str, Any] | None:
        expected = self.fake.auth
        if expected is None:
            return None
        given = self.headers.get("Authorization") or ""
        if not given.startswith("Basic "):
            return {"detail": "Not authenticated"}
        token = base64.b64encode(f"{expected[0]}:{expected[1]}".encode()).decode()
        if given.removeprefix("Basic ") != token:
            return _http_error(401, "Incorrect username or password")
        return None

    def _run(self, kind: str, body: Any) -> None:
        refused = self.fake.check(kind, body)
        if refused is not None:
            return self._json(*refused)
        received: dict[str, bytes] = {}
        if kind == "img2img":
            pictures = {"init_images": body["init_images"][0], "mask": body.get("mask")}
            for key, value in pictures.items():
                if value is None:
                    continue
                data = _image_bytes(value)
                if data is None:
                    return self._json(500, _http_error(500, "Invalid encoded image"))
                received[key] = data
        run = self.fake.add_run(kind, body, received)
        if not self.fake.execute(run):
            return self._drop()
        self._json(200, self.fake.answer(run))

    def _drop(self) -> None:
        """Leave without answering: the connection closes, as a dead server's does."""
        self.close_connection = True

    def _fault(self, fault: Fault) -> None:
        if fault.status in (502, 503, 504) and fault.body is None:
            # A proxy's page for a server behind it that is gone.
            page = f"<html><body><h1>{fault.status}</h1>upstream unavailable</body></html>"
            return self._send(fault.status, page.encode(), "text/html")
        body = fault.body
        if body is None:
            body = OUT_OF_MEMORY if fault.status == 500 else {"detail": f"HTTP {fault.status}"}
        self._json(fault.status, body)
