"""Every `webapp` module imports on its own, whatever was imported before it.

An import circle held together by lazy imports shows only in some orders (a module moved to
the top broke `import webapp.worker` but not `import wsgi`). So each module is imported first
alone, in a process with no `webapp` module loaded; and the whole package in a few shuffled
orders. Third-party packages are loaded once before the processes fork, which keeps this
fast without hiding anything of ours.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.helpers import run_python

SCRIPT = textwrap.dedent(
    """
    import importlib, os, pkgutil, random, sys, traceback

    import flask, flask_migrate, flask_smorest, flask_sqlalchemy, huey, marshmallow  # noqa
    import PIL.Image, pydantic, requests, sqlalchemy, urllib3  # noqa
    import alembic, apispec, flask_wtf, jinja2, limits, redis, swagger_ui, webargs  # noqa
    import websocket, werkzeug, wtforms, yaml  # noqa
    try:
        import psycopg  # noqa: scaling out only; importing it once is what costs
    except ImportError:
        pass

    import webapp
    names = sorted(
        m.name for m in pkgutil.walk_packages(webapp.__path__, "webapp.")
    )
    for key in [k for k in sys.modules if k == "webapp" or k.startswith("webapp.")]:
        del sys.modules[key]

    orders = [[name] for name in names]
    for seed in range(4):
        shuffled = list(names)
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)

    failures = []
    for order in orders:
        pid = os.fork()
        if pid == 0:
            try:
                for name in order:
                    importlib.import_module(name)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            failures.append(" → ".join(order[:3]) + " …")
    print(len(names), "modules,", len(orders), "orders")
    for failure in failures:
        print("FAILED:", failure)
    sys.exit(1 if failures else 0)
    """
)


def test_every_module_imports_first_and_in_any_order(tmp_path: Path) -> None:
    done = run_python(SCRIPT, tmp_path / "instance", timeout=240, DARKROOM_AUTO_MIGRATE="false")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    modules = int(done.stdout.split()[0])
    assert modules >= 40, done.stdout  # the walk found the package's modules
    assert "FAILED" not in done.stdout
