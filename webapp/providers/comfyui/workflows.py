"""ComfyUI workflows: the built-in txt2img / img2img / inpaint graphs, the user's workflow
files (`<instance>/workflows/*.json`, API format), their `{{placeholders}}`, and whether a
server can run one.

Both kinds are graphs in ComfyUI's API format (node id → `class_type` + `inputs`) whose
inputs may hold placeholders; a job fills them from its parameters just before it is queued.
A string that is exactly one placeholder becomes the typed value (`"{{seed}}"` → `1234`); a
placeholder inside a longer string is replaced by its text (`"a photo of {{prompt}}"`).
`{{name:default}}` also sets the default the model offers for that parameter.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PLACEHOLDERS: dict[str, type] = {
    "prompt": str,
    "negative_prompt": str,
    "seed": int,
    "width": int,
    "height": int,
    "num_inference_steps": int,
    "guidance_scale": float,
    "sampler_name": str,
    "scheduler": str,
    "prompt_strength": float,
    "num_outputs": int,
    "image": str,  # the uploaded picture's name, as LoadImage takes it
    "mask": str,  # the uploaded mask's name, as LoadImageMask takes it
}
"""Every placeholder a workflow may hold, with the type its value is sent as."""

FOLDER = "workflows"  # in the instance folder
MAX_FILE_BYTES = 1024 * 1024
WORKFLOW_PREFIX = "workflow:"  # how a backend lists the user workflows it can run
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")
_TOKEN = r"\{\{\s*([A-Za-z_]+)\s*(?::([^{}]*))?\}\}"
_WHOLE = re.compile(rf"^{_TOKEN}$")
_ANY = re.compile(_TOKEN)


class WorkflowInvalid(Exception):
    """A workflow file that cannot be used, and why."""


@dataclass(frozen=True)
class Workflow:
    """A user workflow: its file's name, its graph and the placeholders it holds (with the
    default each one names, if any)."""

    name: str
    graph: dict[str, Any]
    placeholders: dict[str, Any]

    @property
    def backend_model(self) -> str:
        """The name a server lists it by once it can run it (`probe`)."""
        return f"{WORKFLOW_PREFIX}{self.name}"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The pictures it takes."""
        return tuple(role for role in ("image", "mask") if role in self.placeholders)


# -- placeholders ------------------------------------------------------------------------


def _typed(name: str, value: Any) -> Any:
    kind = PLACEHOLDERS[name]
    if kind is str:
        return str(value)
    number = float(value)
    return int(number) if kind is int else number


def _strings(graph: dict[str, Any]) -> Iterator[str]:
    for node in graph.values():
        for value in node.get("inputs", {}).values():
            if isinstance(value, str):
                yield value


def placeholders_in(graph: dict[str, Any]) -> dict[str, Any]:
    """The placeholders a graph holds, with the default written with each (or None)."""
    found: dict[str, Any] = {}
    for text in _strings(graph):
        for name, default in _ANY.findall(text):
            if name not in PLACEHOLDERS:
                known = ", ".join(f"{{{{{n}}}}}" for n in PLACEHOLDERS)
                raise WorkflowInvalid(f"unknown placeholder {{{{{name}}}}} (known: {known})")
            value = None
            if default.strip():
                try:
                    value = _typed(name, default.strip())
                except ValueError:
                    raise WorkflowInvalid(
                        f"the default of {{{{{name}}}}} is not a {PLACEHOLDERS[name].__name__}"
                    ) from None
            if found.get(name) is None:
                found[name] = value
    return found


def fill(graph: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the graph with every placeholder replaced by its value (typed when it is
    the whole string); KeyError names a placeholder without a value."""

    def replace(text: str) -> Any:
        whole = _WHOLE.match(text)
        if whole:
            return _typed(whole[1], _value(whole[1], whole[2]))
        return _ANY.sub(lambda m: str(_value(m[1], m[2])), text)

    def _value(name: str, default: str | None) -> Any:
        value = values.get(name)
        if value is None and default and default.strip():
            value = default.strip()
        if value is None:
            raise KeyError(name)
        return value

    filled = copy.deepcopy(graph)
    for node in filled.values():
        inputs = node.get("inputs", {})
        for key, value in inputs.items():
            if isinstance(value, str) and "{{" in value:
                inputs[key] = replace(value)
    return filled


# -- the built-in graphs -----------------------------------------------------------------


def builtin(checkpoint: str, mode: str, full_repaint: bool = False) -> dict[str, Any]:
    """The built-in graph for a checkpoint: "txt2img", "img2img" or "inpaint" (repainting
    the mask from noise with VAEEncodeForInpaint when `full_repaint`, else keeping the
    picture under a noise mask with SetLatentNoiseMask)."""
    graph: dict[str, Any] = {
        "1": _node("CheckpointLoaderSimple", ckpt_name=checkpoint),
        "2": _node("CLIPTextEncode", text="{{prompt}}", clip=["1", 1]),
        "3": _node("CLIPTextEncode", text="{{negative_prompt}}", clip=["1", 1]),
        "5": _node(
            "KSampler",
            seed="{{seed}}",
            steps="{{num_inference_steps}}",
            cfg="{{guidance_scale}}",
            sampler_name="{{sampler_name}}",
            scheduler="{{scheduler}}",
            denoise=1.0,
            model=["1", 0],
            positive=["2", 0],
            negative=["3", 0],
            latent_image=["4", 0],
        ),
        "6": _node("VAEDecode", samples=["5", 0], vae=["1", 2]),
        "7": _node("SaveImage", images=["6", 0], filename_prefix="darkroom"),
    }
    if mode == "txt2img":
        graph["4"] = _node(
            "EmptyLatentImage", width="{{width}}", height="{{height}}", batch_size="{{num_outputs}}"
        )
        return graph
    graph["8"] = _node("LoadImage", image="{{image}}")
    graph["4"] = _node("RepeatLatentBatch", samples=["9", 0], amount="{{num_outputs}}")
    graph["5"]["inputs"]["denoise"] = "{{prompt_strength}}"
    if mode == "img2img":
        graph["9"] = _node("VAEEncode", pixels=["8", 0], vae=["1", 2])
    elif full_repaint:
        graph["10"] = _node("LoadImageMask", image="{{mask}}", channel="red")
        graph["9"] = _node(
            "VAEEncodeForInpaint", pixels=["8", 0], vae=["1", 2], mask=["10", 0], grow_mask_by=6
        )
    else:
        graph["10"] = _node("LoadImageMask", image="{{mask}}", channel="red")
        graph["11"] = _node("VAEEncode", pixels=["8", 0], vae=["1", 2])
        graph["9"] = _node("SetLatentNoiseMask", samples=["11", 0], mask=["10", 0])
    return graph


def _node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


# -- user workflow files -----------------------------------------------------------------


def check_graph(graph: Any) -> dict[str, Any]:
    """The graph if it is in ComfyUI's API format; WorkflowInvalid says what it is not."""
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
        raise WorkflowInvalid(
            "this is the editor's format; export the workflow with 'Export (API)' "
            "(or 'Save (API Format)') instead"
        )
    if not isinstance(graph, dict) or not graph:
        raise WorkflowInvalid("not a JSON object of nodes (ComfyUI's API format)")
    for node_id, node in graph.items():
        if not (
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs", {}), dict)
        ):
            raise WorkflowInvalid(f"node {node_id!r} has no class_type and inputs")
    return graph


def load(path: Path) -> Workflow:
    """Read and check one workflow file."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise WorkflowInvalid(f"larger than {MAX_FILE_BYTES // 1024} KB")
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WorkflowInvalid(f"not valid JSON ({exc})") from None
    graph = check_graph(graph)
    placeholders = placeholders_in(graph)
    if "mask" in placeholders and "image" not in placeholders:
        raise WorkflowInvalid("{{mask}} needs {{image}} too")
    return Workflow(path.stem, graph, placeholders)


_cache: dict[Path, tuple[tuple[int, int], Workflow | None]] = {}
_cache_lock = threading.Lock()


def user_workflows(instance_path: str) -> list[Workflow]:
    """The usable workflow files of the instance folder, by name; a file that cannot be
    used is logged (once per version of the file) and left out."""
    folder = Path(instance_path) / FOLDER
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        workflow = _read(path)
        if workflow is not None:
            found.append(workflow)
    return found


def find(instance_path: str, name: str) -> Workflow | None:
    """One workflow by name, if its file is there and usable."""
    if not _NAME.fullmatch(name):
        return None
    path = Path(instance_path) / FOLDER / f"{name}.json"
    return _read(path) if path.is_file() else None


def _read(path: Path) -> Workflow | None:
    """A workflow file, parsed once per version (modification time and size)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    version = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    workflow: Workflow | None = None
    if not _NAME.fullmatch(path.stem):
        log.warning(
            "comfyui workflow %s skipped: name it with letters, digits, '.', '_' or '-' "
            "(at most 48)",
            path.name,
        )
    else:
        try:
            workflow = load(path)
        except (OSError, WorkflowInvalid) as exc:
            log.warning("comfyui workflow %s skipped: %s", path.name, exc)
    with _cache_lock:
        _cache[path] = (version, workflow)
    return workflow


# -- what a server can run ---------------------------------------------------------------


def choices(object_info: dict[str, Any], class_type: str, name: str) -> list[str] | None:
    """The values a server's `/object_info` allows for a node's combo input, or None when
    the input is not a combo (or the node is unknown)."""
    node = object_info.get(class_type)
    if not isinstance(node, dict):
        return None
    for section in ("required", "optional"):
        spec = (node.get("input") or {}).get(section, {}).get(name)
        if not isinstance(spec, list) or not spec:
            continue
        if isinstance(spec[0], list):  # the classic shape: [[choices...], {options}]
            return [str(c) for c in spec[0]]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return [str(c) for c in spec[1].get("options", [])]  # the newer node schema
    return None


def unmet_need(graph: dict[str, Any], object_info: dict[str, Any]) -> str | None:
    """Why a server cannot run the graph (a node type it lacks, a model file or choice it
    does not have), or None when it can: what ComfyUI itself would refuse it for."""
    for node_id, node in graph.items():
        class_type = node["class_type"]
        if class_type not in object_info:
            return f"node {node_id} is a {class_type}, which the server does not have"
        for key, value in node.get("inputs", {}).items():
            if not isinstance(value, str) or "{{" in value:
                continue
            allowed = choices(object_info, class_type, key)
            if allowed is not None and value not in allowed:
                return f"node {node_id} ({class_type}) wants {key} {value!r}, not on the server"
    return None


def each_image(outputs: dict[str, Any], accept: Callable[[dict[str, Any]], bool]) -> list[dict]:
    """The images of a finished prompt's outputs (node by node, in node-id order) that
    `accept` takes."""

    def order(node_id: str) -> tuple[int, str]:
        return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)

    found = []
    for node_id in sorted(outputs, key=order):
        images = outputs[node_id].get("images") if isinstance(outputs[node_id], dict) else None
        for image in images if isinstance(images, list) else []:
            if isinstance(image, dict) and isinstance(image.get("filename"), str) and accept(image):
                found.append(image)
    return found
