"""Command-line tasks: `flask --app wsgi init`, and the accounts of servers with no browser:
`users create|list` and `keys create|revoke`."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from webapp import accounts
from webapp.models import utc_text

users_cli = AppGroup("users", help="Darkroom accounts (used with DARKROOM_AUTH=on).")
keys_cli = AppGroup("keys", help="API keys of Darkroom accounts.")


def _fail(message: str) -> None:
    raise click.ClickException(message)


@users_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
def create_user(name: str, admin: bool) -> None:
    """Add a user; the password is read from standard input (one line)."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        user = accounts.create_user(name, password, admin=admin)
    except accounts.AccountError as exc:
        _fail(str(exc))
        return
    role = "administrator" if user.is_admin else "user"
    click.echo(f"created {role} {user.name}")


@users_cli.command("list")
def list_users() -> None:
    """List the accounts: name, role, state, created."""
    rows = accounts.list_users()
    if not rows:
        click.echo("no users yet")
        return
    width = max(len(u.name) for u in rows)
    for user in rows:
        role = "admin" if user.is_admin else "user"
        state = "disabled" if user.disabled else "active"
        click.echo(f"{user.name:<{width}}  {role:<5}  {state:<8}  {utc_text(user.created_at)}")


@keys_cli.command("create")
@click.option("--user", "user_name", required=True, help="The key's owner.")
@click.option("--name", "label", required=True, help="A name to recognise the key by.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(accounts.SCOPES),
    help="What the key may do (repeat for several).",
)
@click.option("--expires-days", type=click.IntRange(1, 3650), help="Stop working after N days.")
def create_key(
    user_name: str, label: str, scopes: tuple[str, ...], expires_days: int | None
) -> None:
    """Make an API key; the key is printed alone on the last line, and only this once."""
    user = accounts.find_user(user_name)
    if user is None:
        _fail(f"no user named {user_name!r}")
        return
    try:
        row, key = accounts.create_key(user, label, list(scopes), expires_days)
    except accounts.AccountError as exc:
        _fail(str(exc))
        return
    expiry = f", expires {utc_text(row.expires_at)}" if row.expires_at else ""
    click.echo(f"key {row.prefix} for {user.name} ({', '.join(row.scopes)}{expiry}):")
    click.echo(key)


@keys_cli.command("revoke")
@click.argument("key_prefix")
def revoke_key(key_prefix: str) -> None:
    """Revoke the key whose prefix (as shown, such as dr_AbCd1234) or whole key is given."""
    try:
        found = accounts.find_keys_by_prefix(key_prefix)
    except accounts.AccountError as exc:
        _fail(str(exc))
        return
    if not found:
        _fail(f"no key starts with {key_prefix!r}")
    if len(found) > 1:
        _fail(f"{len(found)} keys start with {key_prefix!r}; give more of it")
    key = accounts.revoke_key(found[0].id)
    click.echo(f"revoked {key.prefix} ({key.name}) of {key.user.name}")


def register_cli(app: Flask) -> None:
    """Add Darkroom's commands to the `flask` command."""

    @app.cli.command("init")
    def init() -> None:
        """Prepare the instance folder, the media folder and the database schema."""
        # create_app() already made the folders and upgraded the schema; say where they are.
        click.echo(f"instance: {current_app.instance_path}")
        click.echo(f"database: {current_app.config['SQLALCHEMY_DATABASE_URI']}")
        click.echo(f"media:    {current_app.config['MEDIA_ROOT']}")
        if current_app.config.get("AUTH") == "on":
            taken = accounts.adopt_ownerless_jobs()
            if taken:
                click.echo(f"accounts: {taken} earlier jobs given to the first administrator")
            elif not accounts.any_user():
                click.echo("accounts: on; open the site to create the administrator account")

    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
