"""The model registry endpoint."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from webapp.api.openapi import errors
from webapp.api.schemas import ModelListSchema
from webapp.auth import requires
from webapp.providers import available_models, default_model_id

blp = Blueprint("models", __name__, description="Models that can run here")


@blp.route("/models")
class Models(MethodView):
    """The models available with the current configuration."""

    @blp.response(200, ModelListSchema)
    @errors(blp)
    @requires("read")
    def get(self) -> dict[str, Any]:
        """List models with their parameters, defaults and bounds"""
        models = available_models()
        default = default_model_id(models)
        return {
            "default_model": default,
            "models": [{**m.as_dict(), "default": m.id == default} for m in models.values()],
        }
