"""The create form: from form fields to a job request, prefills, and copy-as-curl."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from werkzeug.datastructures import MultiDict

from webapp import urls
from webapp.config import auth_enabled
from webapp.models import Job
from webapp.providers.base import ASPECT_RATIOS, ModelSpec
from webapp.providers.mapping import nearest_aspect_ratio

# Fields the form shows outside the "Advanced" section.
MAIN_FIELDS = ("aspect_ratio",)


@dataclass
class FormState:
    """What the create form shows: values, errors by field, and the chosen model."""

    model: ModelSpec
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def advanced_params(self) -> list:
        """The model's parameters for the Advanced section."""
        return [p for p in self.model.params if p.name not in MAIN_FIELDS]

    @property
    def advanced_open(self) -> bool:
        """Open the Advanced section when it holds a value or an error."""
        names = {p.name for p in self.advanced_params}
        return any(k in names for k in self.errors) or any(
            self.values.get(k) not in (None, "") for k in names
        )


def _convert(raw: str, kind: str) -> Any:
    """Turn a form string into the JSON type the validator expects; leave junk for it to name."""
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


def request_data(form: MultiDict[str, str], spec: ModelSpec) -> dict[str, Any]:
    """Build the same request body a script would POST, from the form's fields."""
    params: dict[str, Any] = {}
    for param in spec.params:
        raw = (form.get(param.name) or "").strip()
        if raw:
            params[param.name] = _convert(raw, param.type)
    return {
        "prompt": form.get("prompt", ""),
        "model": spec.id,
        "parameters": params,
    }


def errors_by_field(errors: list[dict[str, Any]]) -> dict[str, str]:
    """Map validation errors to form field names (the last part of `loc`)."""
    out: dict[str, str] = {}
    for err in errors:
        loc = [str(part) for part in err["loc"] if part not in ("body", "parameters")]
        name = loc[0] if loc else "form"
        out.setdefault(name, err["msg"])
    return out


def prefill(job: Job, *, new_seed: bool = False) -> dict[str, Any]:
    """The form values that recreate a job's request (Remix), optionally with a fresh seed."""
    values: dict[str, Any] = {"prompt": job.prompt, **(job.parameters or {})}
    if new_seed:
        values.pop("seed", None)
    return values


def ratio_class(job: Job) -> str:
    """The CSS aspect-ratio class of a job's picture before it exists (no layout shift)."""
    params = job.provider_parameters or {}
    size = str(params.get("resize_to") or "")
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        width, height = str(params.get("width") or ""), str(params.get("height") or "")
    if width.isdigit() and height.isdigit() and int(width) and int(height):
        ratio = nearest_aspect_ratio(int(width), int(height))
    else:
        ratio = str(params.get("aspect_ratio") or "1:1")
        ratio = ratio if ratio in ASPECT_RATIOS else "1:1"
    return "ratio-" + ratio.replace(":", "-")


def curl_command(job: Job) -> str:
    """The API call that submits the same job, ready to paste in a shell."""
    body = {"prompt": job.prompt, "model": job.model, "parameters": job.parameters or {}}
    url = urls.absolute(f"{urls.API_PREFIX}/jobs/generate")
    # With accounts on, a key from Settings (kept in the shell, never in the page).
    key = (
        '  -H "Authorization: Bearer $DARKROOM_KEY" \\\n'
        if auth_enabled(current_app.config)
        else ""
    )
    return (
        f"curl -X POST {shlex.quote(url)} \\\n"
        f"{key}"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(json.dumps(body, ensure_ascii=False))}"
    )
