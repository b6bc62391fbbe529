"""Command-line tasks: `flask --app wsgi init`."""

from __future__ import annotations

import click
from flask import Flask, current_app


def register_cli(app: Flask) -> None:
    """Add Darkroom's commands to the `flask` command."""

    @app.cli.command("init")
    def init() -> None:
        """Prepare the instance folder, the media folder and the database schema."""
        # create_app() already made the folders and upgraded the schema; say where they are.
        click.echo(f"instance: {current_app.instance_path}")
        click.echo(f"database: {current_app.config['SQLALCHEMY_DATABASE_URI']}")
        click.echo(f"media:    {current_app.config['MEDIA_ROOT']}")
