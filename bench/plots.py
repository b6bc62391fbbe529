"""docs/bench-*.png: the plots of one run's results (none when matplotlib is missing).

bench-load.png (throughput and latency against connections), bench-pages.png (each page
at both database sizes) and bench-start.png (submit -> start, with its targets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.numbers import FIG_LABELS, PAGE_LABELS
from bench.targets import START_P50, START_P95

COLOURS = {
    "a_json": "#888888",
    "b_read": "#1f77b4",
    "c_insert": "#2ca02c",
    "status": "#d62728",
    "generate": "#9467bd",
}


def plots(r: dict[str, Any], folder: Path) -> None:
    """Write the plots of the phases that ran into `folder`."""
    # matplotlib is a dev dependency: without it the report is written with no plots.
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if r.get("sweep"):
        _load(plt, r, folder)
    if r.get("pages"):
        _pages(plt, r, folder)
    if r.get("start_latency_idle") or r.get("idle"):
        _start(plt, r, folder)


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load(plt: Any, r: dict[str, Any], folder: Path) -> None:
    sweep = r["sweep"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for k, points in sweep.items():
        conns = [p["connections"] for p in points]
        left.plot(conns, [p["rps"] for p in points], "o-", color=COLOURS[k], label=FIG_LABELS[k])
        right.plot(
            [p["rps"] for p in points],
            [p["p50_ms"] for p in points],
            "o-",
            color=COLOURS[k],
            label=f"{FIG_LABELS[k]} p50",
        )
        right.plot(
            [p["rps"] for p in points],
            [p["p99_ms"] for p in points],
            "x:",
            color=COLOURS[k],
            alpha=0.7,
        )
    left.set_xscale("log", base=2)
    left.set_xlabel("connections")
    left.set_ylabel("requests / s")
    left.set_title("Throughput against connections")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set_xlabel("requests / s")
    right.set_ylabel("latency, ms (o p50, x p99)")
    right.set_title("Latency against load (1 to 64 connections)")
    right.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"Darkroom vs baselines on the same gunicorn line "
        f"({r['meta']['cpu']}, {r['meta']['cores']} cores)",
        fontsize=10,
    )
    _save(plt, fig, folder / "bench-load.png")


def _pages(plt: Any, r: dict[str, Any], folder: Path) -> None:
    pages = r["pages"]
    small, large = pages["sizes"]
    names = list(pages["pages"])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = range(len(names))
    ax.bar(
        [i - 0.2 for i in x],
        [pages["pages"][n][small]["p50_ms"] for n in names],
        0.4,
        label=f"{int(small):,} jobs",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [pages["pages"][n][large]["p50_ms"] for n in names],
        0.4,
        label=f"{int(large):,} jobs",
    )
    ax.set_xticks(
        list(x),
        [PAGE_LABELS[n].replace("`", "").replace(" (info)", "") for n in names],
        rotation=20,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("p50 latency, ms (one connection)")
    ax.set_title("Job list and gallery pages: small vs large database")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    _save(plt, fig, folder / "bench-pages.png")


def _start(plt: Any, r: dict[str, Any], folder: Path) -> None:
    idle, after = r.get("start_latency_idle") or [], r.get("idle") or []
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = [
        ("idle queue", [x["from_return_ms"] for x in idle]),
        ("after idling", [e["latency"]["from_return_ms"] for e in after]),
    ]
    for i, (label, values) in enumerate(groups):
        ax.scatter(
            [i + (j % 7 - 3) * 0.03 for j in range(len(values))], values, alpha=0.7, label=label
        )
    for bound, name, colour in ((START_P50, "p50", "green"), (START_P95, "p95", "red")):
        label = f"{name} target {bound.limit_text()}"
        ax.axhline(bound.limit, color=colour, ls="--", lw=1, label=label)
    ax.set_xticks([0, 1], [g[0] for g in groups])
    ax.set_ylabel("POST returned -> started_at, ms")
    ax.set_title("Submit -> worker start")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    _save(plt, fig, folder / "bench-start.png")
