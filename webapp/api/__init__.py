"""The REST API under /api/v1: blueprints, request-body docs and the offline docs page."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from flask import Blueprint, Flask, send_from_directory
from werkzeug.wrappers import Response

from webapp.api import health, jobs, media, models, uploads, webhooks
from webapp.api.openapi import CommonHeadersPlugin
from webapp.extensions import api
from webapp.validation import JobCreate

# Swagger UI's files ship inside a PyPI package, so the docs page works with no network.
_SWAGGER_DIR = Path(swagger_ui.__file__).parent / "static"

docs_assets = Blueprint("docs_assets", __name__, url_prefix="/api/v1/docs/assets")


@docs_assets.get("/<path:filename>")
def swagger_asset(filename: str) -> Response:
    """Serve a Swagger UI file."""
    return send_from_directory(_SWAGGER_DIR, filename, max_age=86400)


API_MODULES = (jobs, media, uploads, webhooks, models, health)


def api_blueprints() -> list:
    """The /api/v1 blueprints (JSON, no cookies: exempt from CSRF)."""
    return [module.blp for module in API_MODULES]


# Registered once: flask-smorest replays it into the spec of every app it is bound to.
api.register_converter(jobs.JobIdConverter, jobs.job_id_param_schema)


def register_api(app: Flask) -> None:
    """Bind flask-smorest, document pydantic request bodies, register the blueprints."""
    app.url_map.converters["job_id"] = jobs.JobIdConverter
    # flask-smorest would document a `default` answer in its own error shape, which our
    # handlers never send; every real answer is documented per operation instead.
    api.DEFAULT_ERROR_RESPONSE_NAME = None
    api.init_app(app)
    for unused in ("Error", "PaginationMetadata"):  # flask-smorest's; we answer neither
        api.spec.components.schemas.pop(unused, None)
    plugin = CommonHeadersPlugin(app)
    plugin.init_spec(api.spec)
    api.spec.plugins.append(plugin)
    schema = JobCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        api.spec.components.schema(name, component=definition)
    api.spec.components.schema("JobCreate", component=schema)
    for blp in api_blueprints():
        api.register_blueprint(blp, url_prefix="/api/v1")
    app.register_blueprint(docs_assets)
