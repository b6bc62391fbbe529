"""Shared fixtures: a fresh instance folder (SQLite files, media) per test.

Plain helpers live in tests/helpers.py; the browser fixtures in tests/browser.py, loaded
here as a plugin (nothing there starts a process or a browser until a test asks for it).
"""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The queue object reads its file path at import time, so point it at a scratch folder
# before anything imports webapp. Each test still gets its own app database and media.
_QUEUE_DIR = tempfile.mkdtemp(prefix="darkroom-queue-")
os.environ["DARKROOM_INSTANCE_PATH"] = _QUEUE_DIR
for _name in (
    "DATABASE_URL", "REDIS_URL", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL", "OPENAI_API_KEY",
    "OPENAI_BASE_URL", "DARKROOM_PUBLIC_URL",
):  # fmt: skip
    os.environ.pop(_name, None)

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from tests.helpers import TEST_CONFIG, FreshSessionClient  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.extensions import db, huey  # noqa: E402

pytest_plugins = ["tests.browser"]

DATABASE = "darkroom.db"  # the app's SQLite file in its instance folder


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database the migrations in the tree built, once per test process (xdist worker)."""
    folder = tmp_path_factory.mktemp("template")
    template = create_app({**TEST_CONFIG, "INSTANCE_PATH": str(folder)})  # AUTO_MIGRATE on
    with template.app_context():
        db.session.remove()
        db.engine.dispose()
    database = folder / DATABASE
    # The last connection to close folds SQLite's write-ahead log into the file, so the
    # file alone is the whole database and a copy of it is a database at the head revision.
    assert not database.with_name(f"{DATABASE}-wal").exists(), "a connection is still open"
    return database


@pytest.fixture
def app_config(tmp_path: Path, migrated_database: Path) -> dict[str, Any]:
    """The test configuration; tests may change it before `app` is built.

    Its instance folder already holds a copy of the migrated database.
    """
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / DATABASE).write_bytes(migrated_database.read_bytes())
    return {**TEST_CONFIG, "INSTANCE_PATH": str(folder)}


@pytest.fixture
def app(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Flask]:
    """An app with its own database and media folder, and an empty queue."""
    # On the copied database there is nothing to migrate. A test that points the app at
    # another folder or database, or sets AUTO_MIGRATE itself, gets what it asked for.
    copied = (
        app_config["INSTANCE_PATH"] == str(tmp_path / "instance")
        and "SQLALCHEMY_DATABASE_URI" not in app_config
    )
    huey.flush()
    app = create_app({"AUTO_MIGRATE": not copied, **app_config})
    app.test_client_class = FreshSessionClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    huey.flush()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


def _scope(nodeid: str) -> str:
    """The unit `make test` hands to one process: a file, or all the browser files together."""
    path = nodeid.split("::", 1)[0]
    return "tests/test_browser_*" if path.startswith("tests/test_browser_") else path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files that start real processes first, those with the most such tests foremost.

    They take most of the suite's time, mostly waiting on their processes, so started first
    they run alongside each other and the many quick in-process files fill the gaps around
    them. (xdist would otherwise hand out the files with the most tests first, leaving a
    long file of few tests, such as test_chaos.py, to run alone at the end.) Within a file
    the order stays as written; every worker sorts alike, so their collections still match.
    """
    heavy: collections.Counter[str] = collections.Counter(
        _scope(item.nodeid)
        for item in items
        if item.get_closest_marker("e2e") or item.get_closest_marker("browser")
    )
    order = {scope: n for n, scope in enumerate(dict.fromkeys(_scope(i.nodeid) for i in items))}
    items.sort(key=lambda item: (-heavy[_scope(item.nodeid)], order[_scope(item.nodeid)]))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`pytest -n N --dist loadfile` (what `make test` runs), with the browser files as one.

    Each file goes to one process, so its module fixtures are built once; the browser files
    go to one process together, so they share one stack and one Chromium (tests/browser.py)
    instead of starting one of each per file. The files are handed out in the collection's
    order (see pytest_collection_modifyitems), not by their number of tests.
    """
    from xdist.scheduler import LoadFileScheduling

    class FilesAndBrowser(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    config.option.loadscopereorder = False
    return FilesAndBrowser(config, log)
