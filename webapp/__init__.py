"""Darkroom: a self-hosted media generation service."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask

from webapp.config import PROJECT_ROOT, Defaults, check_settings, from_environment, instance_path

__version__ = "0.1.0"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, environment, test overrides, extensions, blueprints, errors."""
    folder = Path((test_config or {}).get("INSTANCE_PATH") or instance_path())
    app = Flask(
        __name__,
        instance_path=str(folder),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.from_object(Defaults)
    app.config.update(from_environment())
    app.config.from_prefixed_env("DARKROOM")
    if test_config:
        app.config.update(test_config)
    finish_config(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the guide's field order
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True

    from webapp import pages
    from webapp.api import api_blueprints, register_api
    from webapp.bodies import register_bodies
    from webapp.cli import register_cli
    from webapp.database import MIGRATIONS, register_database, upgrade_schema
    from webapp.errors import register_errors
    from webapp.extensions import db, migrate
    from webapp.facade import views as facade
    from webapp.pages import account as account_pages
    from webapp.ratelimit import register_rate_limits
    from webapp.security import register_security
    from webapp.webhooks import register_webhooks

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    register_database(app)
    if app.config["AUTO_MIGRATE"]:
        upgrade_schema(app)
    register_bodies(app)
    register_api(app)
    app.register_blueprint(facade.bp)
    register_security(app, [*api_blueprints(), facade.bp])
    app.register_blueprint(pages.bp)
    app.register_blueprint(account_pages.bp)
    register_rate_limits(app)
    register_errors(app)
    register_cli(app)
    register_webhooks()
    return app


def finish_config(app: Flask) -> None:
    """Check the settled configuration, then derive paths and engine options from it."""
    check_settings(app.config)
    folder = Path(app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    media_root = Path(app.config.get("MEDIA_ROOT") or folder / "media")
    media_root.mkdir(parents=True, exist_ok=True)
    app.config["MEDIA_ROOT"] = str(media_root)
    uri = app.config.get("SQLALCHEMY_DATABASE_URI") or f"sqlite:///{folder / 'darkroom.db'}"
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    if uri.startswith("sqlite"):
        from webapp.database import sqlite_engine_options

        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **sqlite_engine_options(),
            **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
        }
    logger = logging.getLogger("webapp")
    if not logger.handlers:
        # gunicorn and huey configure only their own loggers; ours print beside theirs.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
