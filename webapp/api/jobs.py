"""Job endpoints: submit, status, list, cancel."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.routing import BaseConverter
from werkzeug.sansio.response import Response as SansioResponse

from webapp import jobs, urls
from webapp.api.openapi import (
    ERROR_SCHEMAS,
    ERRORS,
    METHOD_NOT_ALLOWED_HEADERS,
    errors,
    json_request,
    operation_ref,
    query_parameters,
    rate_limited,
)
from webapp.api.schemas import (
    STATUS_JOB_COLUMNS,
    STATUS_MEDIA_COLUMNS,
    JobCreatedSchema,
    JobListSchema,
    JobSchema,
    job_status_body,
)
from webapp.auth import current_user_id, owner_filter, requires, user_filter
from webapp.bodies import check_beyond_data_uris, larger_body
from webapp.validation import JobListArgs, parse_job_create, parse_list_args

blp = Blueprint("jobs", __name__, description="Submit generation jobs and follow them")

CREATED_LINKS = {
    name: {
        "operationRef": operation_ref(path, method),
        "parameters": {"job_id": "$response.body#/id"},
    }
    for name, path, method in (
        ("GetJobStatus", "/jobs/status/{job_id}", "get"),
        ("CancelJob", "/jobs/{job_id}", "delete"),
        ("GetJobWebhooks", "/jobs/{job_id}/webhooks", "get"),
    )
}
"""Where a created job can be followed (OpenAPI links, also used by stateful fuzzing)."""


class JobIdConverter(BaseConverter):
    """A job id as the last path segment: anything but `generate`.

    `/jobs/generate` belongs to the submission endpoint; without this, `/jobs/<job_id>` also
    matched it, so `DELETE /jobs/generate` looked for a job called "generate" and `OPTIONS`
    advertised DELETE there.
    """

    regex = r"(?!generate$)[^/]+"


def job_id_param_schema(_converter: JobIdConverter) -> dict[str, Any]:
    """How the converter's path parameter is documented."""
    return {"type": "string", "minLength": 1, "not": {"const": "generate"}}


@blp.route("/jobs/generate")
class JobGenerate(MethodView):
    """Submit a job."""

    @json_request(blp, "JobCreate")
    @blp.doc(responses={201: {"links": CREATED_LINKS}})
    @blp.response(
        201,
        JobCreatedSchema,
        headers={
            "Location": {
                "description": "The job's status path, as `status_url`",
                "required": True,
                "schema": {"type": "string", "pattern": "^/api/v1/jobs/status/[^/]+$"},
            }
        },
    )
    @errors(blp, 400, 413, 422, 503)
    @rate_limited(blp, "RATE_LIMIT_CREATE", "create")
    @larger_body("MAX_UPLOAD_BYTES", base64_copies=2)  # an image and a mask as data URIs
    @requires("generate")
    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Queue a generation job"""
        data = request.get_data()
        limit = int(current_app.config["MAX_CONTENT_LENGTH"])
        check_beyond_data_uris(data, limit, ("parameters", "image"), ("parameters", "mask"))
        body = parse_job_create(data)
        job = jobs.submit_job(body, client_ip=request.remote_addr, owner_id=current_user_id())
        status_url = urls.job_status_path(job.id)
        created = {
            "id": job.id,
            "status": job.status,
            "created_at": job.created_at,
            "status_url": status_url,
            "estimated_completion_time": jobs.estimate_seconds(job),
            "model": job.model,
            "warnings": job.warnings,
        }
        return created, 201, {"Location": status_url}


@blp.route("/jobs/status/<string:job_id>")
class JobStatusView(MethodView):
    """A job's status."""

    @blp.response(200, JobSchema)
    @errors(blp, 404)
    @rate_limited(blp, "RATE_LIMIT_STATUS", "status")
    @requires("read")
    def get(self, job_id: str) -> SansioResponse:
        """Get a job's status, progress and media"""
        # Built without marshmallow (see `job_status_body`); JobSchema documents it.
        read = jobs.read_job_status(
            job_id, STATUS_JOB_COLUMNS, STATUS_MEDIA_COLUMNS, owner=owner_filter()
        )
        return current_app.json.response(job_status_body(read))


@blp.route("/jobs")
class Jobs(MethodView):
    """The job listing."""

    @blp.doc(parameters=query_parameters(JobListArgs))
    @blp.response(200, JobListSchema)
    @errors(blp, 422)
    @rate_limited(blp, "RATE_LIMIT_STATUS", "status")  # a page of statuses: the same bucket
    @requires("read")
    def get(self) -> dict[str, Any]:
        """List jobs, newest first"""
        args = parse_list_args(request.args.to_dict())
        # `user` is read only with accounts on (`user_filter`), and documented then.
        owner = user_filter(request.args.get("user"))
        page = jobs.list_jobs(args.page, args.per_page, args.status, owner=owner)
        return {
            "jobs": page.items,
            "total": page.total or 0,
            "page": args.page,
            "per_page": args.per_page,
            "pages": page.pages,
            "has_next": page.has_next,
            "has_prev": page.has_prev,
        }


@blp.route("/jobs/<job_id:job_id>")
class JobById(MethodView):
    """One job."""

    @blp.response(204)
    @errors(blp, 404, 409)
    @blp.alt_response(
        405,
        schema=ERROR_SCHEMAS[ERRORS[405][0]],
        description="`generate` is not a job id: `/jobs/generate` only accepts POST",
        headers=METHOD_NOT_ALLOWED_HEADERS,
    )
    @requires("generate")
    def delete(self, job_id: str) -> None:
        """Cancel a waiting or running job"""
        jobs.cancel_job(job_id, owner_filter())
