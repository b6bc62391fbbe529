"""How the report reads and writes the numbers of one run's results.

The names of the throughput figures and of the pages, the medians taken over runs, and the
formats of a number, a share, a latency, a verdict and a markdown table row: the summary,
the sections and the plots all use these.
"""

from __future__ import annotations

from statistics import median
from typing import Any

FIG_LABELS = {
    "a_json": "(a) bare Flask JSON",
    "b_read": "(b) Flask-SQLAlchemy read by primary key",
    "c_insert": "(c) insert one row, own transaction",
    "status": "GET /api/v1/jobs/status/{id}",
    "status_key": "GET /api/v1/jobs/status/{id} with a bearer key",
    "generate": "POST /api/v1/jobs/generate",
}
PAGE_LABELS = {
    "api_page1": "GET /api/v1/jobs page 1",
    "api_deep": "GET /api/v1/jobs last page",
    "api_status_filter": "GET /api/v1/jobs?status=completed page 1",
    "gallery_index": "gallery `/` (first page)",
    "gallery_deep": "gallery `/gallery?cursor=` deep (96%, a full page left)",
    "gallery_search": "gallery search `q=lighthouse storm` (info)",
}


def med(runs: list[dict[str, Any]], key: str) -> float:
    """The median of one value over runs (0 when there are none)."""
    return median(r[key] for r in runs) if runs else 0.0


def cpu_ms(runs: list[dict[str, Any]]) -> float | None:
    """The median web CPU per request over runs, in ms (None when it was not read)."""
    values = [x["server_cpu_ms"] for x in runs if x.get("server_cpu_ms")]
    return median(values) if values else None


def num(value: float | None, digits: int = 1) -> str:
    """A number with thousands separators, or n/a."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    """A share as a whole percentage, or n/a."""
    return "n/a" if value is None else f"{value * 100:.0f}%"


def ms(value: float) -> str:
    """A latency in milliseconds."""
    return f"{value:.1f} ms"


def verdict(ok: bool | None) -> str:
    """A target's result as the tables show it."""
    return "n/a" if ok is None else ("**pass**" if ok else "**MISS**")


def row(*cells: Any) -> str:
    """One row of a markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def run_list(runs: list[dict[str, Any]], key: str) -> str:
    """One value of every run, in order."""
    return ", ".join(f"{x[key]:,.0f}" for x in runs)
