"""A fake ComfyUI server on loopback: real HTTP and a real websocket on one port, prompts that
queue, run step by step and land in the history.

`FakeComfyUI` serves the routes Darkroom uses, with ComfyUI's shapes:
- `GET /object_info` (and `/object_info/{class}`): the core nodes the built-in workflows use
  (plus `ImageInvert`, for user workflows), with the checkpoints, samplers and schedulers
  it was given and the uploaded pictures as LoadImage's choices;
- `POST /prompt` `{"prompt", "client_id", "prompt_id"?}`: validated as ComfyUI validates
  (unknown node types, missing inputs, links of the wrong type, values out of range or not
  among the choices, no output node, a missing input picture), 400 with `error` and
  `node_errors` when refused, else `{"prompt_id", "number", "node_errors"}`;
- `GET /queue`, `POST /queue` (`delete`, `clear`), `POST /interrupt` (with `prompt_id`: only
  when that prompt runs, as newer servers do), `GET /history/{id}` (filled once a prompt
  ended), `POST /upload/image` (multipart `image`, `overwrite`, `type`, `subfolder`),
  `GET /view?filename=&subfolder=&type=`;
- `GET /ws?clientId=`: `status` at once, then for the prompts of that client
  `execution_start`, `execution_cached`, `executing`, `progress` per sampler step with a
  binary preview frame (event 1, JPEG), `executed`, `execution_success` (the history is
  written after it, as ComfyUI does) or `execution_error` / `execution_interrupted`, and
  `executing` with `node: null` last.

One prompt runs at a time, `step_seconds` per sampler step. Outputs are real PNGs of the
latent's size, coloured by seed (blended over the input picture for img2img). Knobs:
`fail`/`hang` a route, `plan_next` (fail the next prompt, or die in the middle of it),
`hold`/`release` the sampler, `drop_websockets`, `websocket=False` (no `/ws`, as behind a
proxy that does not pass it), and `die` (the server goes away at once: connections reset,
new ones refused). Every request is recorded.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw, ImageOps
from websockets.sync.server import Server, ServerConnection, serve

from tests.fake_http import FakeHandler, FakeServer

CHECKPOINTS = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")
SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "ddim")
SCHEDULERS = ("normal", "karras", "exponential", "simple")
MAX_INT = 0xFFFFFFFFFFFFFFFF


def _int(default: int, low: int, high: int, step: int = 1) -> list[Any]:
    return ["INT", {"default": default, "min": low, "max": high, "step": step}]


def _float(default: float, low: float, high: float) -> list[Any]:
    return ["FLOAT", {"default": default, "min": low, "max": high, "step": 0.01}]


def object_info(
    checkpoints: tuple[str, ...], inputs: list[str], missing: tuple[str, ...]
) -> dict[str, Any]:
    """The nodes this fake has, as `/object_info` describes them."""
    nodes: dict[str, tuple[dict[str, Any], list[str], bool]] = {
        "CheckpointLoaderSimple": (
            {"ckpt_name": [list(checkpoints), {"tooltip": "The checkpoint to load."}]},
            ["MODEL", "CLIP", "VAE"],
            False,
        ),
        "CLIPTextEncode": (
            {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
            ["CONDITIONING"],
            False,
        ),
        "EmptyLatentImage": (
            {
                "width": _int(512, 16, 16384, 8),
                "height": _int(512, 16, 16384, 8),
                "batch_size": _int(1, 1, 4096),
            },
            ["LATENT"],
            False,
        ),
        "KSampler": (
            {
                "model": ["MODEL"],
                "seed": _int(0, 0, MAX_INT),
                "steps": _int(20, 1, 10000),
                "cfg": _float(8.0, 0.0, 100.0),
                "sampler_name": [list(SAMPLERS), {}],
                "scheduler": [list(SCHEDULERS), {}],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"],
                "denoise": _float(1.0, 0.0, 1.0),
            },
            ["LATENT"],
            False,
        ),
        "VAEDecode": ({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"], False),
        "VAEEncode": ({"pixels": ["IMAGE"], "vae": ["VAE"]}, ["LATENT"], False),
        "VAEEncodeForInpaint": (
            {
                "pixels": ["IMAGE"],
                "vae": ["VAE"],
                "mask": ["MASK"],
                "grow_mask_by": _int(6, 0, 64),
            },
            ["LATENT"],
            False,
        ),
        "SetLatentNoiseMask": ({"samples": ["LATENT"], "mask": ["MASK"]}, ["LATENT"], False),
        "RepeatLatentBatch": ({"samples": ["LATENT"], "amount": _int(1, 1, 64)}, ["LATENT"], False),
        "LoadImage": (
            {"image": [sorted(inputs), {"image_upload": True}]},
            ["IMAGE", "MASK"],
            False,
        ),
        "LoadImageMask": (
            {
                "image": [sorted(inputs), {"image_upload": True}],
                "channel": [["alpha", "red", "green", "blue"], {}],
            },
            ["MASK"],
            False,
        ),
        "ImageInvert": ({"image": ["IMAGE"]}, ["IMAGE"], False),
        "SaveImage": (
            {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
            [],
            True,
        ),
        "PreviewImage": ({"images": ["IMAGE"]}, [], True),
    }
    return {
        name: {
            "input": {"required": required, "optional": {}},
            "input_order": {"required": list(required)},
            "output": outputs,
            "output_is_list": [False] * len(outputs),
            "output_name": outputs,
            "name": name,
            "display_name": name,
            "description": "",
            "python_module": "nodes",
            "category": "fake",
            "output_node": output_node,
        }
        for name, (required, outputs, output_node) in nodes.items()
        if name not in missing
    }


@dataclass
class Plan:
    """How the next queued prompt will run."""

    error: str | None = None  # the sampler raises this (`execution_error`)
    exception_type: str = "RuntimeError"
    die_at_step: int | None = None  # the whole server goes away at this sampler step


@dataclass
class Prompt:
    """A queued prompt."""

    number: int
    prompt_id: str
    graph: dict[str, Any]
    client_id: str | None
    outputs: list[str]
    plan: Plan
    interrupted: bool = False

    def queue_item(self) -> list[Any]:
        return [
            self.number,
            self.prompt_id,
            self.graph,
            {"client_id": self.client_id},
            self.outputs,
        ]


@dataclass
class Recorded:
    """A request the fake received."""

    method: str
    path: str
    route: str
    query: dict[str, str]
    body: Any


class Interrupted(Exception):
    """The running prompt was interrupted."""


class NodeFailed(Exception):
    """A node raised while running (a planned error)."""

    def __init__(self, message: str, exception_type: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass
class Latent:
    width: int
    height: int
    batch: int = 1
    source: Image.Image | None = None
    mask: Image.Image | None = None
    seed: int = 0
    denoise: float = 1.0
    sampled: bool = False


@dataclass
class State:
    """What the fake knows, guarded by `FakeComfyUI.lock`."""

    pending: list[Prompt] = field(default_factory=list)
    running: Prompt | None = None
    step: int = 0  # the running prompt's sampler step (0 when none runs)
    node: str | None = None  # the running node
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, bytes] = field(default_factory=dict)  # "subfolder/name" -> bytes
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (type, sub, name)
    counter: int = 0


class FakeComfyUI(FakeServer[Recorded]):
    """A ComfyUI server on 127.0.0.1 for tests; `start()` it and point COMFYUI_URLS at .url."""

    def __init__(
        self,
        *,
        checkpoints: tuple[str, ...] = CHECKPOINTS,
        step_seconds: float = 0.01,
        websocket: bool = True,
        previews: bool = True,
        missing_nodes: tuple[str, ...] = (),
        auth: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoints, self.step_seconds = checkpoints, step_seconds
        self.websocket, self.previews = websocket, previews
        self.missing_nodes, self.auth = missing_nodes, auth
        self.dead = False
        self.state = State()
        self.plans: list[Plan] = []
        self.hold_after: int | None = None  # samplers wait after this step until released
        self.websocket_clients: list[str] = []  # client ids whose websocket was accepted
        self.sockets: dict[str, ServerConnection] = {}
        self.http_sockets: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"127.0.0.1:{self.port}"
        self.server: Server = serve(
            self._websocket, sock=self.listener, process_request=self._ws_request
        )
        self._websocket_handler = self.server.handler
        self.server.handler = self._dispatch  # HTTP and the websocket share the port
        self._serving = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._executor = threading.Thread(target=self._execute_forever, daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeComfyUI:
        self._serving.start()
        self._executor.start()
        return self

    def die(self) -> None:
        """Go away at once, as a crashed server: connections reset, new ones refused."""
        with self.lock:
            if self.dead:
                return
            self.dead = True
            self.closing.set()
            self.changed.notify_all()
            sockets = list(self.http_sockets) + [c.socket for c in self.sockets.values()]
        self.listener.close()  # refused from now on
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._serving.is_alive():  # its shutdown waits for serve_forever to end
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def stop(self) -> None:
        """Stop (for fixtures): like `die`, then wait until the port is closed."""
        self.die()
        if self._serving.is_alive():
            self._serving.join(5)

    def settings(self) -> dict[str, Any]:
        """App settings that send the ComfyUI models here, with short timeouts."""
        return {
            "COMFYUI_URLS": self.url,
            "COMFYUI_CONNECT_TIMEOUT": 1.0,
            "COMFYUI_READ_TIMEOUT": 2.0,
        }

    # -- knobs ----------------------------------------------------------------------------

    def plan_next(self, **plan: Any) -> None:
        """Decide how the next queued prompt runs (see `Plan`)."""
        with self.lock:
            self.plans.append(Plan(**plan))

    def hold(self, after_step: int = 1) -> None:
        """Make samplers wait once they finished this step (moving an earlier hold on),
        until `release` (or an interrupt)."""
        with self.changed:
            self.hold_after = after_step
            self.changed.notify_all()

    def release(self) -> None:
        with self.changed:
            self.hold_after = None
            self.changed.notify_all()

    def drop_websockets(self) -> None:
        """Break every websocket connection (HTTP goes on answering)."""
        with self.lock:
            connections = list(self.sockets.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.socket.shutdown(socket.SHUT_RDWR)

    # -- what happened --------------------------------------------------------------------

    def queue_foreign(self, graph: dict[str, Any], client_id: str = "someone-else") -> str:
        """Queue a prompt as another client of the server would (for queue tests)."""
        prompt = self.enqueue(graph, client_id, None)
        return prompt.prompt_id

    @property
    def running_id(self) -> str | None:
        with self.lock:
            return self.state.running.prompt_id if self.state.running else None

    @property
    def pending_ids(self) -> list[str]:
        with self.lock:
            return [p.prompt_id for p in self.state.pending]

    def input_bytes(self, name: str) -> bytes:
        with self.lock:
            return self.state.inputs[name]

    # -- the queue ------------------------------------------------------------------------

    def enqueue(
        self, graph: dict[str, Any], client_id: str | None, prompt_id: str | None
    ) -> Prompt:
        with self.lock:
            self.state.counter += 1
            outputs = [n for n, node in graph.items() if self._is_output(node)]
            prompt = Prompt(
                number=self.state.counter,
                prompt_id=prompt_id or str(uuid.uuid4()),
                graph=graph,
                client_id=client_id,
                outputs=outputs,
                plan=self.plans.pop(0) if self.plans else Plan(),
            )
            self.state.pending.append(prompt)
            self.changed.notify_all()
        self._broadcast_status()
        return prompt

    def _is_output(self, node: dict[str, Any]) -> bool:
        return node.get("class_type") in ("SaveImage", "PreviewImage")

    def delete(self, prompt_ids: list[str]) -> None:
        with self.lock:
            self.state.pending = [p for p in self.state.pending if p.prompt_id not in prompt_ids]
            self.changed.notify_all()

    def interrupt(self, prompt_id: str | None) -> None:
        with self.lock:
            running = self.state.running
            if running is not None and prompt_id in (None, running.prompt_id):
                running.interrupted = True
            self.changed.notify_all()

    def _execute_forever(self) -> None:
        while not self.closing.is_set():
            with self.changed:
                self.changed.wait_for(lambda: self.state.pending or self.closing.is_set())
                if self.closing.is_set():
                    return
                prompt = self.state.pending.pop(0)
                self.state.running, self.state.step = prompt, 0
                self.changed.notify_all()
            self._run(prompt)
            with self.changed:
                self.state.running, self.state.node, self.state.step = None, None, 0
                self.changed.notify_all()
            self._broadcast_status()

    def _run(self, prompt: Prompt) -> None:
        pid = prompt.prompt_id
        messages: list[list[Any]] = []

        def say(kind: str, data: dict[str, Any], keep: bool = False) -> None:
            if keep:
                messages.append([kind, data])
            self._send(prompt.client_id, {"type": kind, "data": data})

        say("execution_start", {"prompt_id": pid, "timestamp": _now()}, keep=True)
        say("execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": _now()}, keep=True)
        values: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        status = "success"
        for node_id in _order(prompt.graph, prompt.outputs):
            node = prompt.graph[node_id]
            with self.changed:
                self.state.node = node_id
                self.changed.notify_all()
            say("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
            try:
                result = self._evaluate(prompt, node_id, node, values)
            except Interrupted:
                if self.dead:
                    return  # gone mid-job: no history, nothing more said
                data = {
                    "prompt_id": pid, "node_id": node_id, "node_type": node["class_type"],
                    "executed": executed, "timestamp": _now(),
                }  # fmt: skip
                say("execution_interrupted", data, keep=True)
                status = "error"
                break
            except NodeFailed as exc:
                if self.dead:
                    return
                data = {
                    "prompt_id": pid, "node_id": node_id, "node_type": node["class_type"],
                    "executed": executed, "exception_message": f"{exc}\n",
                    "exception_type": exc.exception_type, "traceback": ["Traceback ..."],
                    "current_inputs": {}, "current_outputs": {}, "timestamp": _now(),
                }  # fmt: skip
                say("execution_error", data, keep=True)
                status = "error"
                break
            if self.dead:
                return  # gone mid-job: no history, nothing more said
            values[node_id] = result
            executed.append(node_id)
            if self._is_output(node):
                outputs[node_id] = result
                say(
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": result, "prompt_id": pid},
                )
        if status == "success":
            say("execution_success", {"prompt_id": pid, "timestamp": _now()}, keep=True)
        with self.changed:
            self.state.history[pid] = {
                "prompt": prompt.queue_item(),
                "outputs": outputs if status == "success" else {},
                "status": {
                    "status_str": status,
                    "completed": status == "success",
                    "messages": messages,
                },
                "meta": {n: {"node_id": n, "display_node": n} for n in outputs},
            }
            self.changed.notify_all()
        say("executing", {"node": None, "prompt_id": pid})

    def _evaluate(
        self, prompt: Prompt, node_id: str, node: dict[str, Any], values: dict[str, Any]
    ) -> Any:
        inputs = {k: (values[v[0]][v[1]] if _is_link(v) else v) for k, v in node["inputs"].items()}
        kind = node["class_type"]
        if kind == "CheckpointLoaderSimple":
            return ("model", "clip", "vae")
        if kind == "CLIPTextEncode":
            return (inputs["text"],)
        if kind == "EmptyLatentImage":
            return (Latent(inputs["width"], inputs["height"], inputs["batch_size"]),)
        if kind in ("LoadImage", "LoadImageMask"):
            with self.lock:
                data = self.state.inputs[inputs["image"]]
            image = Image.open(io.BytesIO(data))
            image.load()
            if kind == "LoadImageMask":
                return (image.convert("RGBA").getchannel("R"),)
            return ([image.convert("RGB")], Image.new("L", image.size, 0))
        if kind in ("VAEEncode", "VAEEncodeForInpaint"):
            source = inputs["pixels"][0]
            width, height = (source.width // 8) * 8, (source.height // 8) * 8
            return (Latent(width, height, source=source, mask=inputs.get("mask")),)
        if kind == "SetLatentNoiseMask":
            latent = inputs["samples"]
            return (
                Latent(latent.width, latent.height, latent.batch, latent.source, inputs["mask"]),
            )
        if kind == "RepeatLatentBatch":
            latent = inputs["samples"]
            return (
                Latent(
                    latent.width, latent.height, latent.batch * inputs["amount"], latent.source,
                    latent.mask,
                ),
            )  # fmt: skip
        if kind == "KSampler":
            return (self._sample(prompt, node_id, inputs),)
        if kind == "VAEDecode":
            return (_decode(inputs["samples"]),)
        if kind == "ImageInvert":
            return ([ImageOps.invert(image) for image in inputs["image"]],)
        if kind in ("SaveImage", "PreviewImage"):
            return self._save(kind, inputs)
        raise NodeFailed(f"the fake cannot run {kind}", "NotImplementedError")

    def _sample(self, prompt: Prompt, node_id: str, inputs: dict[str, Any]) -> Latent:
        latent: Latent = inputs["latent_image"]
        steps = int(inputs["steps"])
        for step in range(1, steps + 1):
            if self.closing.wait(self.step_seconds) or self.dead:
                raise Interrupted
            with self.changed:
                if prompt.interrupted:
                    raise Interrupted
                self.state.step = step
                self.changed.notify_all()
            if prompt.plan.die_at_step == step:
                self.die()
                raise Interrupted
            if prompt.plan.error and step == max(1, steps // 2):
                raise NodeFailed(prompt.plan.error, prompt.plan.exception_type)
            progress = {"value": step, "max": steps, "prompt_id": prompt.prompt_id, "node": node_id}
            self._send(prompt.client_id, {"type": "progress", "data": progress})
            if self.previews:
                self._send_preview(prompt.client_id, latent, int(inputs["seed"]), step / steps)
            with self.changed:
                self.changed.wait_for(
                    lambda step=step: (
                        self.hold_after is None  # type: ignore[misc]
                        or step < self.hold_after
                        or prompt.interrupted
                        or self.closing.is_set()
                    )
                )
        return Latent(
            latent.width, latent.height, latent.batch, latent.source, latent.mask,
            seed=int(inputs["seed"]), denoise=float(inputs["denoise"]), sampled=True,
        )  # fmt: skip

    def _save(self, kind: str, inputs: dict[str, Any]) -> dict[str, Any]:
        images = []
        for image in inputs["images"]:
            with self.lock:
                self.state.counter += 1
                number = self.state.counter
            if kind == "SaveImage":
                prefix = str(inputs["filename_prefix"])
                subfolder, _, base = prefix.rpartition("/")
                folder_type = "output"
            else:
                subfolder, base, folder_type = "", "ComfyUI_temp_fake", "temp"
            filename = f"{base}_{number:05d}_.png"
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            with self.lock:
                self.state.files[(folder_type, subfolder, filename)] = buffer.getvalue()
            images.append({"filename": filename, "subfolder": subfolder, "type": folder_type})
        return {"images": images}

    # -- the websocket --------------------------------------------------------------------

    def _send(self, client_id: str | None, message: dict[str, Any]) -> None:
        self._send_raw(client_id, json.dumps(message))

    def _send_raw(self, client_id: str | None, data: str | bytes) -> None:
        with self.lock:
            connection = self.sockets.get(client_id or "")
        if connection is not None:
            with contextlib.suppress(Exception):  # it went away meanwhile
                connection.send(data)

    def _send_preview(self, client_id: str | None, latent: Latent, seed: int, done: float) -> None:
        colour = _colour(seed)
        image = Image.new("RGB", (64, 64), tuple(int(c * done) for c in colour))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        frame = (1).to_bytes(4, "big") + (1).to_bytes(4, "big") + buffer.getvalue()
        self._send_raw(client_id, frame)

    def _broadcast_status(self) -> None:
        with self.lock:
            remaining = len(self.state.pending) + (1 if self.state.running else 0)
            clients = list(self.sockets)
        for client_id in clients:
            status = {"status": {"exec_info": {"queue_remaining": remaining}}}
            self._send(client_id, {"type": "status", "data": status})

    def _ws_request(self, connection: ServerConnection, request: Any) -> Any:
        path = urlsplit(request.path)
        self.record(Recorded("GET", path.path, "ws", dict(parse_qsl(path.query)), None))
        fault = self.take_fault("ws")
        if self.dead:
            return connection.respond(503, "503: Service Unavailable\n")
        if not self.websocket or path.path != "/ws":
            return connection.respond(404, "404: Not Found\n")
        if fault is not None and fault.status:
            return connection.respond(fault.status, "error\n")
        if self.auth is not None and request.headers.get("Authorization") != _basic(self.auth):
            return connection.respond(401, "401: Unauthorized\n")
        return None

    def _websocket(self, connection: ServerConnection) -> None:
        query = dict(parse_qsl(urlsplit(connection.request.path).query))  # type: ignore[union-attr]
        client_id = query.get("clientId") or uuid.uuid4().hex
        with self.lock:
            self.sockets[client_id] = connection  # a client id that comes back replaces its old
            self.websocket_clients.append(client_id)
            running, node = self.state.running, self.state.node
            remaining = len(self.state.pending) + (1 if running else 0)
            self.changed.notify_all()
        try:
            status = {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id}
            connection.send(json.dumps({"type": "status", "data": status}))
            if running is not None and running.client_id == client_id and node is not None:
                data = {"node": node, "display_node": node, "prompt_id": running.prompt_id}
                connection.send(json.dumps({"type": "executing", "data": data}))
            for _message in connection:
                pass  # the client says nothing ComfyUI listens to
        except Exception:
            pass
        finally:
            with self.lock:
                if self.sockets.get(client_id) is connection:
                    del self.sockets[client_id]
                self.changed.notify_all()

    # -- HTTP -----------------------------------------------------------------------------

    def _dispatch(self, sock: socket.socket, address: Any) -> None:
        """A new connection: the websocket's handshake goes to `websockets`, the rest is
        HTTP served here."""
        try:
            if self.dead:
                sock.close()
                return
            sock.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n" not in head and len(head) < 4096:
                    peeked = sock.recv(4096, socket.MSG_PEEK)
                    if not peeked or peeked == head:
                        break
                    head = peeked
            sock.settimeout(None)
            if head.startswith(b"GET /ws"):
                self._websocket_handler(sock, address)
                return
            with self.lock:
                if self.dead:
                    sock.close()
                    return
                self.http_sockets.add(sock)
            try:
                _Handler(sock, address, self)
            except OSError:
                pass
            finally:
                with self.lock:
                    self.http_sockets.discard(sock)
                with contextlib.suppress(OSError):
                    sock.close()
        finally:
            with self.server.lock:
                self.server.handler_threads.discard(threading.current_thread())

    def info(self) -> dict[str, Any]:
        with self.lock:
            inputs = list(self.state.inputs)
        return object_info(self.checkpoints, inputs, self.missing_nodes)

    def validate(self, graph: Any) -> tuple[dict[str, Any] | None, Any]:
        """ComfyUI's `validate_prompt`: (error, node_errors), error None when it is valid."""
        if not isinstance(graph, dict):
            return _error("invalid_prompt", "Prompt must be an object"), []
        info = self.info()
        for node_id, node in graph.items():
            kind = node.get("class_type") if isinstance(node, dict) else None
            if kind is None:
                return _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                ), {}
            if kind not in info:
                return _error(
                    "invalid_prompt",
                    f"Cannot execute because node {kind} does not exist.",
                    f"Node ID '#{node_id}'",
                ), {}
        outputs = [n for n, node in graph.items() if self._is_output(node)]
        if not outputs:
            return _error("prompt_no_outputs", "Prompt has no outputs"), []
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            errors = self._check_node(graph, node, info)
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": outputs,
                    "class_type": node["class_type"],
                }
        if node_errors:
            return _error("prompt_outputs_failed_validation", "Prompt outputs failed validation"), (
                node_errors
            )
        return None, {}

    def _check_node(
        self, graph: dict[str, Any], node: dict[str, Any], info: dict[str, Any]
    ) -> list[dict[str, Any]]:
        errors = []
        spec = info[node["class_type"]]["input"]["required"]
        given = node.get("inputs") or {}
        for name, (kind, *options) in spec.items():
            rules = options[0] if options else {}
            if name not in given:
                errors.append(_item("required_input_missing", "Required input is missing", name))
                continue
            value = given[name]
            if _is_link(value):
                source = graph.get(value[0])
                produced = info.get(source["class_type"], {}).get("output", []) if source else []
                received = produced[value[1]] if value[1] < len(produced) else "?"
                if isinstance(kind, list) or received != kind:
                    errors.append(
                        _item(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({kind})",
                        )
                    )
                continue
            if isinstance(kind, list):
                if name == "image" and node["class_type"] in ("LoadImage", "LoadImageMask"):
                    with self.lock:
                        present = value in self.state.inputs
                    if not present:
                        errors.append(
                            _item("custom_validation_failed", "Custom validation failed for node",
                                  f"image - Invalid image file: {value}")
                        )  # fmt: skip
                elif value not in kind:
                    errors.append(
                        _item("value_not_in_list", "Value not in list",
                              f"{name}: '{value}' not in {kind}")
                    )  # fmt: skip
            elif kind in ("INT", "FLOAT"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    errors.append(
                        _item("invalid_input_type",
                              f"Failed to convert an input value to a {kind} value",
                              f"{name}, {value}")
                    )  # fmt: skip
                elif kind == "INT" and not float(value).is_integer():
                    errors.append(_item("invalid_input_type", "Not an INT", f"{name}, {value}"))
                elif value < rules.get("min", value):
                    errors.append(
                        _item("value_smaller_than_min",
                              f"Value {value} smaller than min of {rules['min']}", name)
                    )  # fmt: skip
                elif value > rules.get("max", value):
                    errors.append(
                        _item("value_bigger_than_max",
                              f"Value {value} bigger than max of {rules['max']}", name)
                    )  # fmt: skip
            elif kind == "STRING" and not isinstance(value, str):
                errors.append(_item("invalid_input_type", "Not a STRING", f"{name}, {value}"))
        return errors


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _item(kind: str, message: str, details: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _order(graph: dict[str, Any], outputs: list[str]) -> list[str]:
    """The nodes the outputs need, each after the nodes it takes inputs from."""
    done: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in done:
            return
        for value in graph[node_id]["inputs"].values():
            if _is_link(value):
                visit(value[0])
        done.append(node_id)

    for node_id in outputs:
        visit(node_id)
    return done


def _colour(seed: int) -> tuple[int, int, int]:
    return ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256)


def _decode(latent: Latent) -> list[Image.Image]:
    """The pictures a sampled latent decodes to: a colour by seed (and batch index) with a
    centred white disc, blended over the source picture by the denoise for img2img."""
    images = []
    for index in range(latent.batch):
        size = (latent.width, latent.height)
        image = Image.new("RGB", size, _colour(latent.seed + index))
        ImageDraw.Draw(image).ellipse(
            (size[0] * 0.4, size[1] * 0.4, size[0] * 0.6, size[1] * 0.6), fill=(255, 255, 255)
        )
        if latent.source is not None:
            source = latent.source.resize(size)
            image = Image.blend(source, image, latent.denoise)
            if latent.mask is not None:  # keep the source where the mask is black
                image = Image.composite(image, source, latent.mask.resize(size))
        images.append(image)
    return images


def _now() -> int:
    return int(time.time() * 1000)


def _basic(auth: tuple[str, str]) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def parse_qsl(query: str) -> list[tuple[str, str]]:
    return [(k, v[0]) for k, v in parse_qs(query, keep_blank_values=True).items()]


def _route(method: str, path: str) -> str:
    """Which of the fake's routes a request is for ("?" for none)."""
    if path == "/object_info" or path.startswith("/object_info/"):
        return "object_info" if method == "GET" else "?"
    if path == "/history" or path.startswith("/history/"):
        return "history" if method == "GET" else "?"
    routes = {
        ("POST", "/prompt"): "prompt",
        ("GET", "/queue"): "queue",
        ("POST", "/queue"): "queue_edit",
        ("POST", "/interrupt"): "interrupt",
        ("POST", "/upload/image"): "upload",
        ("GET", "/view"): "view",
        ("GET", "/system_stats"): "system_stats",
    }
    return routes.get((method, path), "?")


class _Handler(FakeHandler):
    def __init__(self, sock: socket.socket, address: Any, fake: FakeComfyUI) -> None:
        self.fake = fake
        super().__init__(sock, address, None)  # type: ignore[arg-type]

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        route = _route(method, parts.path)
        query = dict(parse_qsl(parts.query))
        fake = self.fake
        fake.record(Recorded(method, parts.path, route, query, body))
        fault = fake.take_fault(route)
        if fake.delayed(fault):
            return  # the fake is going away
        if fault is not None and fault.status:
            return self._json(fault.status, fault.body if fault.body is not None else {})
        if fake.auth is not None and self.headers.get("Authorization") != _basic(fake.auth):
            return self._send(401, b"401: Unauthorized", "text/plain")
        handler = getattr(self, f"_{route}", None)
        if handler is None:
            return self._send(404, b"404: Not Found", "text/plain")
        handler(parts.path, query, body)

    def _object_info(self, path: str, query: dict[str, str], body: Any) -> None:
        info = self.fake.info()
        name = path.removeprefix("/object_info").strip("/")
        self._json(200, {name: info[name]} if name in info else ({} if name else info))

    def _system_stats(self, path: str, query: dict[str, str], body: Any) -> None:
        self._json(200, {"system": {"comfyui_version": "fake"}, "devices": []})

    def _prompt(self, path: str, query: dict[str, str], body: Any) -> None:
        if not isinstance(body, dict) or "prompt" not in body:
            return self._json(
                400, {"error": _error("no_prompt", "No prompt provided"), "node_errors": {}}
            )
        error, node_errors = self.fake.validate(body["prompt"])
        if error is not None:
            return self._json(400, {"error": error, "node_errors": node_errors})
        wanted = body.get("prompt_id")
        prompt = self.fake.enqueue(
            body["prompt"], body.get("client_id"), wanted if isinstance(wanted, str) else None
        )
        self._json(200, {"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}})

    def _queue(self, path: str, query: dict[str, str], body: Any) -> None:
        with self.fake.lock:
            state = self.fake.state
            running = [state.running.queue_item()] if state.running else []
            pending = [p.queue_item() for p in state.pending]
        self._json(200, {"queue_running": running, "queue_pending": pending})

    def _queue_edit(self, path: str, query: dict[str, str], body: Any) -> None:
        body = body if isinstance(body, dict) else {}
        if body.get("clear"):
            self.fake.delete(self.fake.pending_ids)
        if isinstance(body.get("delete"), list):
            self.fake.delete([str(p) for p in body["delete"]])
        self._send(200, b"", "text/plain")

    def _interrupt(self, path: str, query: dict[str, str], body: Any) -> None:
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        self.fake.interrupt(prompt_id if isinstance(prompt_id, str) else None)
        self._send(200, b"", "text/plain")

    def _history(self, path: str, query: dict[str, str], body: Any) -> None:
        prompt_id = path.removeprefix("/history").strip("/")
        with self.fake.lock:
            history = dict(self.fake.state.history)
        if not prompt_id:
            return self._json(200, history)
        self._json(200, {prompt_id: history[prompt_id]} if prompt_id in history else {})

    def _upload(self, path: str, query: dict[str, str], body: Any) -> None:
        part = body.get("image") if isinstance(body, dict) else None
        if part is None or not part[0]:
            return self._send(400, b"", "text/plain")
        filename, _type, data = part
        subfolder = body["subfolder"][2].decode() if "subfolder" in body else ""
        overwrite = body["overwrite"][2].decode() in ("true", "1") if "overwrite" in body else False
        folder_type = body["type"][2].decode() if "type" in body else "input"
        with self.fake.changed:
            inputs = self.fake.state.inputs
            stem, dot, ext = filename.rpartition(".")
            name, number = filename, 1
            while not overwrite and (key := f"{subfolder}/{name}" if subfolder else name) in inputs:
                if inputs[key] == data:
                    break
                name = f"{stem} ({number}){dot}{ext}"
                number += 1
            inputs[f"{subfolder}/{name}" if subfolder else name] = data
            self.fake.changed.notify_all()
        self._json(200, {"name": name, "subfolder": subfolder, "type": folder_type})

    def _view(self, path: str, query: dict[str, str], body: Any) -> None:
        key = (
            query.get("type") or "output",
            query.get("subfolder") or "",
            query.get("filename", ""),
        )
        with self.fake.lock:
            data = self.fake.state.files.get(key)
        if data is None:
            return self._send(404, b"404: Not Found", "text/plain")
        self._send(200, data, "image/png")
