"""Webhook endpoints: see a job's deliveries and send its event again."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from webapp import jobs, webhooks
from webapp.api.openapi import errors, rate_limited
from webapp.api.schemas import WebhookEventSchema, WebhookListSchema
from webapp.auth import owner_filter, requires
from webapp.models import WebhookEvent

blp = Blueprint("webhooks", __name__, description="Webhook deliveries of a job")


@blp.route("/jobs/<string:job_id>/webhooks")
class JobWebhooks(MethodView):
    """A job's webhook deliveries."""

    @blp.response(200, WebhookListSchema)
    @errors(blp, 404)
    @rate_limited(blp, "RATE_LIMIT_STATUS", "status")
    @requires("read")
    def get(self, job_id: str) -> dict[str, Any]:
        """List the job's webhook events with every delivery attempt"""
        job = jobs.get_job(job_id, owner_filter())
        return {
            "job_id": job.id,
            "webhook_url": job.webhook_url,
            "deliveries": webhooks.deliveries(job.id),
        }


@blp.route("/jobs/<string:job_id>/webhooks/redeliver")
class JobWebhookRedeliver(MethodView):
    """Send a job's event again."""

    @blp.response(202, WebhookEventSchema)
    @errors(blp, 404, 409)
    @rate_limited(blp, "RATE_LIMIT_CREATE", "create")  # each one is a signed POST sent out
    @requires("generate")
    def post(self, job_id: str) -> WebhookEvent:
        """Send the last event again (same webhook-id, fresh signature)"""
        jobs.get_job(job_id, owner_filter())
        return webhooks.redeliver(job_id)
