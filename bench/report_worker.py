"""The worker's sections of docs/benchmarks.md.

Submit -> start on an idle queue and after idling, the queue's rate against Huey's own,
thumbnails, and resident memory; each section is empty when its phase did not run.
"""

from __future__ import annotations

from typing import Any

from bench.load import percentile
from bench.numbers import ms, row
from bench.targets import START_P50, START_P95, TARGETS


def start(r: dict[str, Any]) -> list[str]:
    """Submit -> start latency, on an idle queue and after idling, and the idle CPU."""
    idle, after = r.get("start_latency_idle"), r.get("idle")
    if not (idle or after):
        return []
    L = [
        "## Submit -> worker start",
        "",
        f"Target: p50 {START_P50.text()} and p95 {START_P95.text()}, also after 2 minutes idle; "
        f"an idle worker under {TARGETS['idle_cpu'].limit_text()} of one core.",
        "",
        row("case", "samples", "p50", "p95", "max", "idle worker CPU"),
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]

    def stats(v: list[float]) -> list[str]:
        return [
            str(len(v)),
            f"{percentile(v, 50):.0f} ms",
            f"{percentile(v, 95):.0f} ms",
            f"{max(v):.0f} ms",
        ]

    if idle:
        L.append(
            row(
                "idle queue, from the POST's return",
                *stats([x["from_return_ms"] for x in idle]),
                "",
            )
        )
        L.append(
            row(
                "idle queue, from the POST's sending", *stats([x["from_send_ms"] for x in idle]), ""
            )
        )
    if after:
        cpu20 = [e["cpu_pct_20s"] for e in after if e.get("cpu_pct_20s") is not None]
        cpuw = [e["cpu_pct_whole"] for e in after if e.get("cpu_pct_whole") is not None]
        cpu = (
            f"last 20 s: {', '.join(f'{x:.2f}%' for x in cpu20)}; whole idle time: "
            f"{', '.join(f'{x:.2f}%' for x in cpuw)}"
        )
        idle_s = ", ".join(f"{e['idle_for']:.0f}" for e in after)
        L.append(
            row(
                f"after idling {idle_s} s, from the POST's return",
                *stats([e["latency"]["from_return_ms"] for e in after]),
                cpu,
            )
        )
    return [*L, "", "![Submit to start](bench-start.png)", ""]


def queue(r: dict[str, Any]) -> list[str]:
    """Demo jobs through one worker against Huey's no-op tasks."""
    q, n = r.get("queue"), r.get("noop")
    if not (q or n):
        return []
    L = [
        "## Queue throughput",
        "",
        "One worker process (the Procfile's line: 2 threads), the demo model at its fastest "
        "(1 step, 128x128, no pause per step). The jobs were queued with the worker stopped, "
        "then it drained them: jobs / (last completed_at - first started_at). Baseline: Huey's "
        "raw rate, no-op tasks through the same worker line on a SqliteHuey built like "
        "Darkroom's.",
        "",
        row("", "items", "seconds", "per second", "ratio to baseline"),
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    if n:
        L.append(
            row(
                "Huey no-op tasks (baseline)",
                f"{n['tasks']:,}",
                f"{n['seconds']:.2f}",
                f"{n['tasks_per_s']:,.0f}",
                "1.00",
            )
        )
    if q:
        ratio = f"{q['jobs_per_s'] / n['tasks_per_s']:.3f}" if n else ""
        L.append(
            row(
                "Darkroom demo jobs",
                f"{q['completed']:,} of {q['jobs']:,}",
                f"{q['span_seconds']:.2f}",
                f"{q['jobs_per_s']:,.1f}",
                ratio,
            )
        )
        L.append(
            row(
                "(submitting them through the API, 8 clients)",
                f"{q['jobs']:,}",
                f"{q['fill_seconds']:.2f}",
                f"{q['jobs'] / q['fill_seconds']:,.0f}",
                "",
            )
        )
    dq = r.get("queue_default_size")
    if dq:
        L.append(
            row(
                "demo jobs at the default size (1024x1024, 4 steps), for scale",
                dq["jobs"],
                "",
                f"{dq['jobs_per_s']:.2f}",
                "",
            )
        )
    return [*L, ""]


def thumbs(r: dict[str, Any]) -> list[str]:
    """Darkroom's thumbnail against Pillow's plain one."""
    t = r.get("thumbs")
    if not t:
        return []
    times = t["ms"]
    base = times["pillow_thumbnail"]["median"]
    labels = {
        "pillow_thumbnail": "Pillow: `copy()` + plain `thumbnail((512, 512))` (baseline)",
        "darkroom_resize": "Darkroom's resize alone (LANCZOS, reducing_gap=2.0)",
        "pillow_thumbnail_webp": "Pillow: plain `thumbnail()` + WebP save with defaults",
        "darkroom_make_thumbnail": "Darkroom `make_thumbnail()` (resize + WebP)",
    }
    L = [
        "## Thumbnail of a 2048x2048 picture",
        "",
        f"The demo model's own 2048x2048 drawing (rendered in {t['render_ms']:.0f} ms), "
        f"{t['iterations']} interleaved iterations each; the WebP thumbnail is "
        f"{t['thumb_bytes']:,} bytes.",
        "",
        row("", "median", "p95", "ratio to plain thumbnail()"),
        "| --- | ---: | ---: | ---: |",
    ]
    for k, label in labels.items():
        k_ms = times[k]
        L.append(row(label, ms(k_ms["median"]), ms(k_ms["p95"]), f"{k_ms['median'] / base:.2f}"))
    return [*L, ""]


def rss(r: dict[str, Any]) -> list[str]:
    """Resident memory of the web and the worker before and after the backlog."""
    mem = r.get("rss")
    if not mem:
        return []

    def procs(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in d.items() if k != "total")

    return [
        "## Resident memory",
        "",
        f"After {mem['jobs']:,} jobs through the stack (RSS in MB, read with psutil).",
        "",
        row("process", "before", "after", "each process, after"),
        "| --- | ---: | ---: | --- |",
        row(
            "web (gunicorn master + workers)",
            f"{mem['web_before']['total']:.0f}",
            f"{mem['web_after']['total']:.0f}",
            procs(mem["web_after"]),
        ),
        row(
            "worker (huey_consumer)",
            f"{mem['worker_before']['total']:.0f}",
            f"{mem['worker_after']['total']:.0f}",
            procs(mem["worker_after"]),
        ),
        "",
        "Before: after the idle-queue samples. The worker 'after' was started for the backlog "
        "and ran every one of those jobs.",
        "",
    ]
