"""HTML pages: create, watch and browse on `/`, one job on `/jobs/<id>`."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from webapp import accounts, jobs, uploads, webhooks
from webapp import media as storage
from webapp.api.media import send_media, send_thumbnail
from webapp.api.uploads import send_upload
from webapp.auth import current_user_id, owner_filter, user_filter
from webapp.bodies import larger_body
from webapp.gallery import gallery_page, jobs_by_ids, queue_counts
from webapp.htmx import HTMX_CONFIG, render, wants_partial
from webapp.models import JobStatus, any_running, utc_text
from webapp.pages.account import EXPIRY_CHOICES, require_account
from webapp.pages.forms import (
    FormState,
    curl_command,
    errors_by_field,
    input_links,
    input_pictures,
    kept_pictures,
    picture_model,
    prefill,
    ratio_class,
    request_data,
    store_pictures,
)
from webapp.pages.labels import FILTER_OPTIONS, placeholder_label
from webapp.providers import available_models, backends, default_model_id, get_model
from webapp.providers.base import ModelSpec
from webapp.ratelimit import limited
from webapp.validation import RequestInvalid, parse_job_data

bp = Blueprint("pages", __name__)
bp.before_request(require_account)
bp.add_app_template_global(curl_command)
bp.add_app_template_global(ratio_class)
bp.add_app_template_global(input_links)
bp.add_app_template_global(input_pictures)
bp.add_app_template_filter(placeholder_label)

# The filter's options, and any single status a link may name (`?status=pending`).
STATUS_FILTERS = frozenset({*FILTER_OPTIONS, *(s.value for s in JobStatus)})


@bp.app_context_processor
def htmx_settings() -> dict[str, Any]:
    """The htmx configuration every page carries."""
    return {"htmx_config": HTMX_CONFIG}


@bp.app_template_filter("iso")
def iso(value: datetime | None) -> str:
    """A timestamp as the API writes it: ISO 8601 UTC with a Z."""
    return utc_text(value) or ""


def _filters() -> dict[str, str]:
    """The gallery's search, status filter and (for administrators) user, cleaned."""
    query = " ".join(request.args.get("q", "").split())[:200]
    status = request.args.get("status", "")
    user = request.args.get("user", "").strip()[:64]
    return {"q": query, "status": status if status in STATUS_FILTERS else "", "user": user}


def _model(model_id: str | None) -> Any:
    return get_model(model_id or "") or get_model(default_model_id())


def _menu() -> dict[str, Any]:
    """The model menu: the models on offer, and the servers that do not answer."""
    return {"models": available_models(), "servers_down": backends.down()}


def _page_context(form: FormState) -> dict[str, Any]:
    """Everything the index page shows around the form."""
    filters = _filters()
    page = gallery_page(None, filters["q"], filters["status"], owner=user_filter(filters["user"]))
    return {
        "form": form,
        **_menu(),
        "filters": filters,
        "page": page,
        "counts": queue_counts(owner_filter()),
        "user_names": _user_names(),
        "active": any_running(page.jobs),
        "filter_options": FILTER_OPTIONS,
    }


def _user_names() -> list[str]:
    """The names an administrator may narrow the gallery to (nobody else sees the list)."""
    if owner_filter() is not None or current_user_id() is None:
        return []
    return [u.name for u in accounts.list_users()]


@bp.get("/")
def index() -> Response:
    """The create form, the live queue and the gallery; `?image=` (an upload or a media
    item's id) opens the form with that picture, `&edit=1` with the mask editor on it."""
    values: dict[str, Any] = {}
    model_id = request.args.get("model")
    remix_id = request.args.get("remix")
    if remix_id:
        source = jobs.get_job(remix_id, owner_filter())
        values = prefill(source, new_seed=request.args.get("seed") == "new")
        model_id = source.model
    if request.args.get("image"):  # Use as input, Edit
        values["image"] = request.args["image"]
    edit = request.args.get("edit") == "1"
    pictures = kept_pictures(values, owner_filter())
    spec = picture_model(_model(model_id), [*pictures, *(["mask"] if edit else [])])
    form = FormState(spec, values=values, pictures=pictures, edit=edit)
    return render("index.html", **_page_context(form))


def _index_url(filters: dict[str, str]) -> str:
    """The index page's address with these filters (empty ones left out)."""
    values: dict[str, Any] = {k: v for k, v in filters.items() if v}
    return url_for(".index", **values)


@bp.get("/gallery")
@limited("RATE_LIMIT_SEARCH", "search")  # each search scans the jobs table
def gallery() -> BaseResponse:
    """One gallery page (search, filter, infinite scroll); full page without htmx."""
    filters = _filters()
    if not wants_partial():
        return redirect(_index_url(filters))
    cursor = request.args.get("cursor")
    page = gallery_page(cursor, filters["q"], filters["status"], owner=user_filter(filters["user"]))
    # A new search replaces every card, so it also sets the poller; a further page only
    # starts it (a running card there), never stops it for the cards above.
    active = any_running(page.jobs)
    response = render(
        "partials/gallery_page.html",
        page=page,
        filters=filters,
        first=not cursor,
        oob_poller=active or not cursor,
        active=active,
    )
    if not cursor:
        # The address bar follows the search, so it can be bookmarked and Back works.
        response.headers["HX-Push-Url"] = _index_url(filters)
    return response


@bp.post("/jobs")
@limited("RATE_LIMIT_CREATE", "create")
@larger_body("MAX_UPLOAD_BYTES", base64_copies=2)  # a picture and a painted mask, as files
def create() -> BaseResponse:
    """Submit the create form through the same domain function as the API; its picture
    files are stored as uploads first, so the form keeps them if it comes back."""
    spec = _model(request.form.get("model"))
    pictures, problems = store_pictures(request.form, request.files, current_user_id())
    try:
        if problems:
            raise RequestInvalid(problems)
        job = jobs.submit_job(
            parse_job_data(request_data(request.form, spec, pictures)),
            client_ip=request.remote_addr,
            owner_id=current_user_id(),
        )
    except RequestInvalid as exc:
        return _invalid_form(spec, {**request.form.to_dict(), **pictures}, exc)
    if not wants_partial():
        return redirect(url_for(".index"), 303)
    return render("partials/created.html", job=job, counts=queue_counts(owner_filter()))


def _invalid_form(spec: ModelSpec, values: dict[str, Any], exc: RequestInvalid) -> Response:
    """The create form again with its values, its pictures and the problems (422)."""
    pictures = kept_pictures(values, owner_filter())
    form = FormState(spec, values=values, errors=errors_by_field(exc.errors), pictures=pictures)
    if wants_partial():
        response = render("partials/create_form.html", 422, form=form, **_menu())
        response.headers["HX-Retarget"] = "#create-form"
        response.headers["HX-Reswap"] = "outerHTML"
        return response
    return render("index.html", 422, **_page_context(form))


@bp.get("/poll")
@limited("RATE_LIMIT_POLL", "poll")
def poll() -> Response:
    """One request refreshes every running card and detail on the page (out-of-band swaps)."""
    owner = owner_filter()
    cards = jobs_by_ids(request.args.getlist("id"), owner)
    details = jobs_by_ids(request.args.getlist("detail"), owner)
    return render(
        "partials/poll.html",
        cards=cards,
        details=details,
        counts=queue_counts(owner),
        active=any_running([*cards, *details]),
    )


@bp.get("/partials/advanced")
def advanced() -> Response:
    """The Advanced fields of the chosen model."""
    return render("partials/advanced.html", form=FormState(_model(request.args.get("model"))))


@bp.get("/jobs/<job_id>")
@limited("RATE_LIMIT_POLL", "poll")  # the browser's allowance: reading jobs as pages
def job_page(job_id: str) -> Response:
    """Everything about one job."""
    job = jobs.get_job(job_id, owner_filter())
    return render(
        "job.html",
        job=job,
        counts=queue_counts(owner_filter()),
        active=any_running([job]),
        shares=_shares(job.id),
        expiry_choices=EXPIRY_CHOICES,
    )


def _shares(job_id: str) -> list[Any]:
    """The signed-in user's share links of a job (accounts on)."""
    user = accounts.get_user(current_user_id())
    return accounts.shares_of(user, job_id) if user else []


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> BaseResponse:
    """Cancel a job; a job that ended meanwhile is simply shown as it is."""
    with contextlib.suppress(jobs.JobNotCancellable):
        jobs.cancel_job(job_id, owner_filter())
    job = jobs.get_job(job_id, owner_filter())
    if not wants_partial():
        return redirect(url_for(".job_page", job_id=job_id), 303)
    return render(
        "partials/cancelled.html",
        job=job,
        view=request.form.get("view"),
        counts=queue_counts(owner_filter()),
    )


@bp.post("/jobs/<job_id>/delete")
def delete(job_id: str) -> BaseResponse:
    """Delete a job with its files; from its own page, go back to the gallery."""
    jobs.delete_job(job_id, owner_filter())
    if wants_partial():
        response = render("partials/deleted.html", counts=queue_counts(owner_filter()))
        if request.form.get("view") == "detail":
            response.headers["HX-Redirect"] = url_for(".index")
        return response
    return redirect(url_for(".index"), 303)


@bp.post("/jobs/<job_id>/vary")
@limited("RATE_LIMIT_CREATE", "create")
def vary(job_id: str) -> BaseResponse:
    """Submit the same settings again with a new seed, and open the new job."""
    source = jobs.get_job(job_id, owner_filter())
    parameters = {k: v for k, v in (source.parameters or {}).items() if k != "seed"}
    data = {"prompt": source.prompt, "model": source.model, "parameters": parameters}
    new_job = jobs.submit_job(
        parse_job_data(data), client_ip=request.remote_addr, owner_id=current_user_id()
    )
    target = url_for(".job_page", job_id=new_job.id)
    if wants_partial():
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, 303)


@bp.post("/jobs/<job_id>/webhooks/redeliver")
@limited("RATE_LIMIT_CREATE", "create")
def redeliver(job_id: str) -> BaseResponse:
    """Send the job's webhook event again, then show the job as it is now."""
    jobs.get_job(job_id, owner_filter())  # another user's job is not found
    with contextlib.suppress(webhooks.DeliveryInProgress):  # the page shows it on its way
        webhooks.redeliver(job_id)
    if not wants_partial():
        return redirect(url_for(".job_page", job_id=job_id), 303)
    return render("partials/job_detail.html", job=jobs.get_job(job_id, owner_filter()))


@bp.get("/media/<media_id>")
def media_file(media_id: str) -> Response:
    """A picture for the pages (same bytes and headers as the API's download)."""
    return send_media(
        storage.get_live_media(media_id, owner_filter()),
        download=request.args.get("download") == "1",
    )


@bp.get("/uploads/<upload_id>")
def upload_file(upload_id: str) -> Response:
    """An input picture for the pages (same bytes and headers as the API's download)."""
    return send_upload(uploads.get_live_upload(upload_id, owner_filter()))


@bp.get("/media/<media_id>/thumbnail")
def media_thumbnail(media_id: str) -> Response:
    """A thumbnail for the gallery."""
    return send_thumbnail(storage.get_live_media(media_id, owner_filter()))
