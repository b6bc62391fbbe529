"""The built-in offline `demo` model: deterministic pictures drawn from the prompt's words."""

from __future__ import annotations

import time

from flask import current_app
from PIL import Image

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
    ),
    base_size=1024,
    typical_seconds=2.0,
    offline=True,
)


class DemoProvider:
    """Runs the demo model in the worker process, pacing steps to show progress."""

    name = "demo"

    def models(self) -> list[ModelSpec]:
        """The demo model is always available."""
        return [DEMO_MODEL]

    def generate(self, task: GenerationTask) -> list[Image.Image]:
        """Walk the steps (reporting progress), then draw one picture per output."""
        params = task.params
        steps = int(params["num_inference_steps"])
        pause = float(current_app.config["DEMO_STEP_SECONDS"])
        for step in range(1, steps + 1):
            if pause > 0:
                time.sleep(pause)
            task.report_progress(step / steps)
        seed = int(params["seed"])
        return [
            render_image(task.prompt, seed + index, int(params["width"]), int(params["height"]))
            for index in range(int(params["num_outputs"]))
        ]

    def cancel(self, provider_job_id: str) -> None:
        """Nothing to tell: the demo runs in-process and stops at its next progress report."""
