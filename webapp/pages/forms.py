"""The create form: from form fields to a job request, its pictures, prefills, and
copy-as-curl."""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from webapp import urls
from webapp.config import auth_enabled
from webapp.inputs import ROLES, input_items, store_picture
from webapp.media import MediaExpired, MediaNotFound, get_live_media
from webapp.models import Job
from webapp.providers import available_models
from webapp.providers.base import ASPECT_RATIOS, ModelSpec
from webapp.providers.mapping import nearest_aspect_ratio
from webapp.uploads import (
    UploadExpired,
    UploadNotFound,
    get_live_upload,
)
from webapp.validation import RequestInvalid

# Fields the form shows outside the "Advanced" section.
MAIN_FIELDS = ("aspect_ratio",)

PICTURE_FILES = {"image": "image_file", "mask": "mask_file"}
"""The form's file fields, by the parameter each fills (the mask editor sends a file too:
a data URI in a text field would meet Werkzeug's 500 kB limit on form fields)."""

INPUT_LABELS = {"image": "Input picture", "mask": "Mask"}

_LONGEST_ID = 64  # a reference longer than any id names no upload or media item


@dataclass(frozen=True)
class KeptPicture:
    """A picture the form carries by reference (an upload or a media item), as shown."""

    reference: str
    url: str
    width: int
    height: int


@dataclass
class FormState:
    """What the create form shows: values, errors by field, and the chosen model."""

    model: ModelSpec
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    pictures: dict[str, KeptPicture] = field(default_factory=dict)
    edit: bool = False  # open the mask editor on the picture

    @property
    def picture_error(self) -> str | None:
        """The message shown on the picture field (the image's, else the mask's)."""
        return self.errors.get("image") or self.errors.get("mask")

    @property
    def shows_pictures(self) -> bool:
        """Show the picture field: the model takes a picture, or the form holds one (or a
        problem with one)."""
        return "image" in self.model.inputs or bool(self.pictures) or bool(self.picture_error)

    @property
    def editing(self) -> bool:
        """Open the mask editor: asked for, or a mask was kept (it is drawn in again)."""
        return "image" in self.pictures and (self.edit or "mask" in self.pictures)

    @property
    def aspect_ratio(self) -> str:
        """The ratio the menu shows: as sent; else, with a picture, the picture's own shape
        (empty: the job takes its size from the picture); else the model's default."""
        chosen = str(self.values.get("aspect_ratio") or "")
        if chosen or "image" in self.pictures:
            return chosen
        param = self.model.param("aspect_ratio")
        return str(param.default) if param else ""

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


def request_data(
    form: MultiDict[str, str], spec: ModelSpec, pictures: dict[str, str] | None = None
) -> dict[str, Any]:
    """Build the same request body a script would POST, from the form's fields and the
    references of its pictures (`store_pictures`)."""
    params: dict[str, Any] = {}
    for param in spec.params:
        raw = (form.get(param.name) or "").strip()
        if raw:
            params[param.name] = _convert(raw, param.type)
    params.update(pictures or {})
    return {
        "prompt": form.get("prompt", ""),
        "model": spec.id,
        "parameters": params,
    }


def store_pictures(
    form: MultiDict[str, str], files: MultiDict[str, FileStorage], owner_id: str | None
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The reference of each picture the form sends, by parameter: a file is stored as an
    upload (its id), else the reference the form kept (an upload or a media item's id);
    and the problems of files that are no usable picture, each naming its parameter."""
    chosen: dict[str, str] = {}
    problems: list[dict[str, Any]] = []
    for role, name in PICTURE_FILES.items():
        part = files.get(name)
        kept = (form.get(role) or "").strip()
        if part is not None and part.filename:  # an empty chooser sends a nameless part
            try:
                chosen[role] = store_picture(role, part.stream, owner_id).id
            except RequestInvalid as exc:
                problems += exc.errors
        elif kept:
            chosen[role] = kept
    return chosen, problems


def kept_pictures(values: dict[str, Any], owner: str | None) -> dict[str, KeptPicture]:
    """The pictures the form's values name that the viewer may see, by parameter."""
    kept = {}
    for role in ROLES:
        reference = str(values.get(role) or "").strip()
        found = _kept(reference, owner) if 0 < len(reference) <= _LONGEST_ID else None
        if found is not None:
            kept[role] = found
    return kept


def _kept(reference: str, owner: str | None) -> KeptPicture | None:
    """An upload or a media item by id, with the page address that shows it."""
    with contextlib.suppress(UploadNotFound, UploadExpired):
        upload = get_live_upload(reference, owner)
        url = url_for("pages.upload_file", upload_id=upload.id)
        return KeptPicture(reference, url, upload.width, upload.height)
    with contextlib.suppress(MediaNotFound, MediaExpired):
        media = get_live_media(reference, owner)
        url = url_for("pages.media_file", media_id=media.id)
        return KeptPicture(reference, url, media.width, media.height)
    return None


def picture_model(spec: ModelSpec, roles: Iterable[str]) -> ModelSpec:
    """The model a form opens with for these pictures: `spec` if it takes them all, else
    the first available model that does (else `spec`, whose form says why not)."""
    needed = set(roles)
    if needed <= set(spec.inputs):
        return spec
    return next((m for m in available_models().values() if needed <= set(m.inputs)), spec)


def input_links(job: Job) -> dict[str, str]:
    """Where the create form opens with the job's first picture: as an input ("use") and
    with the mask editor ("edit"), for the roles some model takes."""
    first = job.media[0] if job.media else None
    if first is None or first.expired:
        return {}
    takes = {role for spec in available_models().values() for role in spec.inputs}
    links = {}
    if "image" in takes:
        links["use"] = url_for("pages.index", image=first.id)
    if "mask" in takes:
        links["edit"] = url_for("pages.index", image=first.id, edit=1)
    return links


def input_pictures(job: Job) -> list[tuple[str, str]]:
    """(label, page address) of each picture a job takes, the image first."""
    return [
        (INPUT_LABELS[role], url_for("pages.upload_file", upload_id=upload_id))
        for role, upload_id in input_items(job.parameters or {})
    ]


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
    size = str(params.get("resize_to") or params.get("size") or "")  # OpenAI's: "1536x1024"
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
