"""The built-in offline `demo` model: deterministic pictures drawn from the prompt's words,
blended over an input picture (image-to-image) and kept to a mask's white parts."""

from __future__ import annotations

import time

from flask import current_app
from PIL import Image, ImageFilter

from webapp.providers.base import (
    ASPECT_RATIOS,
    MAX_SEED,
    OUTPUT_FORMATS,
    GenerationTask,
    ModelSpec,
    ParamSpec,
)
from webapp.providers.demo_art import render_image

DEMO_MODEL = ModelSpec(
    id="demo",
    provider="demo",
    label="Demo (offline demo model)",
    description=(
        "Built in and offline: draws a deterministic picture from the prompt's words. "
        "Same prompt, seed and size give the same pixels."
    ),
    params=(
        ParamSpec("width", "integer", 1024, 128, 2048, description="Width in pixels"),
        ParamSpec("height", "integer", 1024, 128, 2048, description="Height in pixels"),
        ParamSpec("aspect_ratio", "enum", "1:1", choices=ASPECT_RATIOS),
        ParamSpec("num_inference_steps", "integer", 4, 1, 50, description="Progress steps"),
        ParamSpec("seed", "integer", None, 0, MAX_SEED, description="Random if empty"),
        ParamSpec("output_format", "enum", "png", choices=OUTPUT_FORMATS),
        ParamSpec("output_quality", "integer", 90, 1, 100, description="JPEG/WebP quality"),
        ParamSpec("num_outputs", "integer", 1, 1, 4, description="Images per job"),
        ParamSpec(
            "prompt_strength",
            "number",
            0.8,
            0,
            1,
            description="With an image: how much of the drawing to blend over it",
        ),
    ),
    base_size=1024,
    typical_seconds=2.0,
    offline=True,
    inputs=("image", "mask"),
)


PREVIEW_SIDE = 256


def _sketch(task: GenerationTask, side: int) -> Image.Image:
    """The first output drawn small, for the previews of a paced run."""
    params = task.params
    width, height = int(params["width"]), int(params["height"])
    scale = side / max(width, height)
    small = (max(8, round(width * scale)), max(8, round(height * scale)))
    drawing = render_image(task.prompt, int(params["seed"]), *small)
    if "image" in task.inputs:
        start = _fitted(task.inputs["image"].image(), small)
        mask = _fitted(task.inputs["mask"].image(), small) if "mask" in task.inputs else None
        drawing = over_input(drawing, start, float(params.get("prompt_strength", 0.8)), mask)
    return drawing


def _in_focus(sketch: Image.Image, done: float) -> Image.Image:
    """The sketch blurred less and less as the steps go: the demo's partial drawing."""
    return sketch.filter(ImageFilter.GaussianBlur(radius=12 * (1 - done)))


def _fitted(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The picture at the output's size (untouched when it already has it)."""
    return picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


def over_input(
    drawing: Image.Image, start: Image.Image, strength: float, mask: Image.Image | None
) -> Image.Image:
    """Image-to-image, the demo's way: the drawing blended over the input by `strength`
    (0 keeps the input, 1 is the drawing alone); with a mask, only where it is white, and
    where it is black the input's pixels exactly."""
    base = start.convert("RGB")
    blended = Image.blend(base, drawing.convert("RGB"), strength)
    if mask is None:
        return blended
    return Image.composite(blended, base, mask.convert("L"))


class DemoProvider:
    """Runs the demo model in the worker process, pacing steps to show progress."""

    name = "demo"
    uses_backends = False

    def models(self) -> list[ModelSpec]:
        """The demo model is always available."""
        return [DEMO_MODEL]

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Walk the steps (reporting progress), then draw one picture per output."""
        params = task.params
        steps = int(params["num_inference_steps"])
        pause = float(current_app.config["DEMO_STEP_SECONDS"])
        # A paced run shows its drawing coming into focus; an unpaced one is over at once.
        sketch = _sketch(task, PREVIEW_SIDE) if pause > 0 else None
        for step in range(1, steps + 1):
            if pause > 0:
                time.sleep(pause)
            task.report_progress(step / steps)
            if sketch is not None and step < steps:
                task.report_preview(_in_focus(sketch, step / steps))
        seed = int(params["seed"])
        size = (int(params["width"]), int(params["height"]))
        drawings = (
            render_image(task.prompt, seed + index, *size)
            for index in range(int(params["num_outputs"]))
        )
        if "image" not in task.inputs:
            return list(drawings)
        start = _fitted(task.inputs["image"].image(), size)
        mask = _fitted(task.inputs["mask"].image(), size) if "mask" in task.inputs else None
        strength = float(params.get("prompt_strength", 0.8))
        return [over_input(drawing, start, strength, mask) for drawing in drawings]

    def cancel(self, provider_job_id: str, backend: object = None) -> None:
        """Nothing to tell: the demo runs in-process and stops at its next progress report."""
