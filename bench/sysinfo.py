"""The machine and the versions a run measured: CPU, cores, memory, Python, packages, tools."""

from __future__ import annotations

import hashlib
import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import load

PACKAGES = (
    "Flask",
    "Werkzeug",
    "flask-smorest",
    "Flask-SQLAlchemy",
    "SQLAlchemy",
    "gunicorn",
    "huey",
    "pillow",
    "limits",
    "pydantic",
    "Jinja2",
    "psutil",
    "matplotlib",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def git_describe(root: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"


def fingerprint(root: Path) -> str:
    """A hash of what the servers run (webapp/, templates/, Procfile, requirements), so runs
    of the same code can be told apart from runs of code that changed in between."""
    digest = hashlib.sha256()
    files = [root / "Procfile", root / "requirements.txt", root / "wsgi.py"]
    for folder in ("webapp", "templates"):
        files += sorted(p for p in (root / folder).rglob("*") if p.is_file() and p.suffix != ".pyc")
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def collect(root: Path) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "load_tool": "wrk" if load.wrk_path() else "python",
        "wrk": load.wrk_version() or "not found",
        "git": git_describe(root),
        "fingerprint": fingerprint(root),
        "loadavg_start": loadavg(),
    }
