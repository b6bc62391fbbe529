"""Settings are checked when the app is built: a bad one stops the start, naming itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_python
from webapp import create_app
from webapp.config import PROJECT_ROOT, Defaults, check_settings
from webapp.extensions import db


def build(app_config: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """Build an app with these settings and return its configuration."""
    app = create_app({**app_config, **settings})
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return dict(app.config)


def test_the_defaults_pass_unchanged() -> None:
    config = {k: v for k, v in vars(Defaults).items() if k.isupper()}
    check_settings(config)
    assert config == {k: v for k, v in vars(Defaults).items() if k.isupper()}


def test_environment_values_are_read_as_numbers_and_booleans(
    monkeypatch: pytest.MonkeyPatch, app_config: dict[str, Any]
) -> None:
    monkeypatch.setenv("DARKROOM_ORPHAN_FILE_GRACE_SECONDS", "7200")
    monkeypatch.setenv("DARKROOM_DOORBELL_WAIT_SECONDS", "0.5")
    monkeypatch.setenv("DARKROOM_RETENTION_DAYS", "0")  # 0 is allowed where it means "never"
    monkeypatch.setenv("DARKROOM_AUTO_MIGRATE", "true")
    config = build(app_config)
    assert config["ORPHAN_FILE_GRACE_SECONDS"] == 7200
    assert config["DOORBELL_WAIT_SECONDS"] == 0.5
    assert config["RETENTION_DAYS"] == 0
    assert config["AUTO_MIGRATE"] is True


def test_numbers_given_as_text_are_settled_to_numbers(app_config: dict[str, Any]) -> None:
    config = build(app_config, LEASE_SECONDS="90", WORKER_CONCURRENCY=3.0, WEBHOOK_TIMEOUT="2.5")
    assert config["LEASE_SECONDS"] == 90 and isinstance(config["LEASE_SECONDS"], int)
    assert config["WORKER_CONCURRENCY"] == 3 and isinstance(config["WORKER_CONCURRENCY"], int)
    assert config["WEBHOOK_TIMEOUT"] == 2.5


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("ORPHAN_FILE_GRACE_SECONDS", "1h", "expected a whole number 0 or more, got '1h'"),
        ("RETENTION_DAYS", -1, "expected a whole number 0 or more, got -1"),
        ("WORKER_CONCURRENCY", 0, "expected a whole number above 0, got 0"),
        ("WORKER_CONCURRENCY", 1.5, "expected a whole number above 0, got 1.5"),
        ("LEASE_SECONDS", True, "expected a whole number above 0, got True"),
        ("WEBHOOK_TIMEOUT", "nan", "expected a number above 0, got 'nan'"),
        ("REPLICATE_DEADLINE_SECONDS", float("inf"), "expected a number above 0, got inf"),
        ("ESTIMATE_CACHE_SECONDS", None, "expected a number 0 or more, got None"),
        ("AUTO_MIGRATE", "no", "expected true or false, got 'no'"),
        ("RATE_LIMIT_CREATE", "ten a minute", "expected a limit such as 10/minute"),
        ("WEBHOOK_RETRY_DELAYS", "10,soon", "expected seconds before each retry"),
        ("WEBHOOK_RETRY_DELAYS", "10,-5", "expected seconds before each retry"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_it(
    app_config: dict[str, Any], key: str, value: Any, expected: str
) -> None:
    with pytest.raises(RuntimeError) as failure:
        build(app_config, **{key: value})
    assert f"DARKROOM_{key}: {expected}" in str(failure.value)


def test_every_bad_setting_is_named_at_once(app_config: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as failure:
        build(
            app_config,
            LEASE_SECONDS="soon",
            AUTO_MIGRATE="yes",
            RATE_LIMIT_POLL="lots",
            WEBHOOK_CA_BUNDLE=str(tmp_path / "missing.pem"),
        )
    message = str(failure.value)
    for key in ("LEASE_SECONDS", "AUTO_MIGRATE", "RATE_LIMIT_POLL", "WEBHOOK_CA_BUNDLE"):
        assert f"DARKROOM_{key}:" in message


def test_no_retries_is_a_valid_choice(app_config: dict[str, Any]) -> None:
    assert build(app_config, WEBHOOK_RETRY_DELAYS="")["WEBHOOK_RETRY_DELAYS"] == ""


@pytest.mark.parametrize("entry", ["import wsgi", "import webapp.worker"])
def test_the_processes_refuse_to_start_on_a_bad_setting(entry: str, tmp_path: Path) -> None:
    """The web and worker entry points stop at once, with the setting's name in the output."""
    done = run_python(entry, tmp_path / "instance", DARKROOM_ORPHAN_FILE_GRACE_SECONDS="an hour")
    assert done.returncode != 0
    assert "DARKROOM_ORPHAN_FILE_GRACE_SECONDS: expected a whole number" in done.stderr
    # Nothing was written before the check: no database appeared.
    assert not (tmp_path / "instance" / "darkroom.db").exists()


def test_every_setting_is_documented() -> None:
    """The README's table (or a provider's page in docs/) names every setting."""
    internal = ("API_", "OPENAPI_", "SQLALCHEMY_")
    pages = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    documented = "".join(page.read_text() for page in pages)
    missing = [
        key
        for key in vars(Defaults)
        if key.isupper() and not key.startswith(internal) and key != "SECRET_KEY"
        if f"`DARKROOM_{key}`" not in documented
    ]
    assert missing == []
    assert "`SECRET_KEY`" in documented
