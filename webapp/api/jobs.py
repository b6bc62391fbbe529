"""Job endpoints: submit, status, list, cancel."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from webapp import jobs, urls
from webapp.api.docs import ERRORS, json_body
from webapp.api.schemas import (
    DetailErrorSchema,
    JobCreatedSchema,
    JobListSchema,
    JobSchema,
    ValidationErrorSchema,
)
from webapp.models import Job
from webapp.params import parse_job_create, parse_list_args

blp = Blueprint("jobs", __name__, description="Submit generation jobs and follow them")

_ERROR_SCHEMAS = {"DetailError": DetailErrorSchema, "ValidationError": ValidationErrorSchema}


def errors(*codes: int) -> Any:
    """Document error answers of an endpoint."""

    def decorate(fn: Any) -> Any:
        for code in codes:
            name, description = ERRORS[code]
            fn = blp.alt_response(code, schema=_ERROR_SCHEMAS[name], description=description)(fn)
        return fn

    return decorate


@blp.route("/jobs/generate")
class JobGenerate(MethodView):
    """Submit a job."""

    @blp.doc(**json_body("JobCreate"))
    @blp.response(201, JobCreatedSchema, headers={"Location": {"schema": {"type": "string"}}})
    @errors(400, 413, 422)
    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Queue a generation job"""
        body = parse_job_create(request.get_data())
        job = jobs.submit_job(body, client_ip=request.remote_addr)
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
    @errors(404)
    def get(self, job_id: str) -> Job:
        """Get a job's status, progress and media"""
        return jobs.get_job(job_id)


@blp.route("/jobs")
class Jobs(MethodView):
    """The job listing."""

    @blp.doc(
        parameters=[
            {"in": "query", "name": "page", "schema": {"type": "integer", "minimum": 1}},
            {
                "in": "query",
                "name": "per_page",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
            {
                "in": "query",
                "name": "status",
                "schema": {
                    "type": "string",
                    "enum": [s for s in JobSchema().fields["status"].metadata["enum"]],
                },
            },
        ]
    )
    @blp.response(200, JobListSchema)
    @errors(422)
    def get(self) -> dict[str, Any]:
        """List jobs, newest first"""
        args = parse_list_args(request.args.to_dict())
        page = jobs.list_jobs(args.page, args.per_page, args.status)
        return {
            "jobs": page.items,
            "total": page.total or 0,
            "page": args.page,
            "per_page": args.per_page,
            "pages": page.pages,
            "has_next": page.has_next,
            "has_prev": page.has_prev,
        }


@blp.route("/jobs/<string:job_id>")
class JobById(MethodView):
    """One job."""

    @blp.response(204)
    @errors(404, 409)
    def delete(self, job_id: str) -> None:
        """Cancel a waiting or running job"""
        jobs.cancel_job(job_id)
