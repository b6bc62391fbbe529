"""Health endpoints for people, load balancers and Kubernetes probes."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from webapp import health
from webapp.api.openapi import errors
from webapp.api.schemas import HealthSchema, LiveSchema, ReadySchema
from webapp.auth import OPEN, requires

blp = Blueprint("health", __name__, description="Service health")


@blp.route("/health")
class Health(MethodView):
    """Overall health."""

    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A store is down")
    @errors(blp)
    @requires(OPEN)
    def get(self) -> tuple[dict[str, Any], int]:
        """Report the database, queue, storage and worker state"""
        body = health.report()
        return body, 503 if body["status"] == "unhealthy" else 200


@blp.route("/health/live")
class Live(MethodView):
    """Liveness."""

    @blp.response(200, LiveSchema)
    @errors(blp)
    @requires(OPEN)
    def get(self) -> dict[str, str]:
        """Answer while the process serves requests"""
        return {"status": "alive"}


@blp.route("/health/ready")
class Ready(MethodView):
    """Readiness."""

    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="Not ready")
    @errors(blp)
    @requires(OPEN)
    def get(self) -> tuple[dict[str, Any], int]:
        """Answer 200 when the database, queue and storage work, else 503"""
        services = health.check_services()
        ready = all(services[k] for k in ("database", "queue", "storage"))
        return {
            "status": "ready" if ready else "not ready",
            "services": services,
        }, 200 if ready else 503
