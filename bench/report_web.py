"""The web's sections of docs/benchmarks.md.

Throughput against the baselines, latency against load, the job list and the gallery at
two sizes, media downloads and uploads; each section is empty when its phase did not run.
"""

from __future__ import annotations

from typing import Any

from bench.numbers import FIG_LABELS, PAGE_LABELS, cpu_ms, med, ms, row, run_list, verdict
from bench.targets import PAGE_TARGET, TARGETS

THROUGHPUT_HEAD = [
    row(
        "",
        "req/s, median of runs",
        "runs (req/s)",
        "latency p50",
        "p95",
        "p99",
        "errors",
        "ratio to baseline",
        "web CPU per request",
        "ratio by CPU",
    ),
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def _throughput_table(
    tp: dict[str, list[dict[str, Any]]], names: list[str], baseline: str
) -> list[str]:
    base = med(tp[baseline], "rps") if tp.get(baseline) else None
    base_cpu = cpu_ms(tp.get(baseline) or [])
    rows = list(THROUGHPUT_HEAD)
    for name in names:
        runs = tp.get(name) or []
        if not runs:
            continue
        value, cpu = med(runs, "rps"), cpu_ms(runs)
        if name == baseline:
            ratio = cpu_ratio = "1.00 (baseline)"
        else:
            ratio = f"{value / base:.2f}" if base else ""
            cpu_ratio = f"{base_cpu / cpu:.2f}" if base_cpu and cpu else ""
        rows.append(
            row(
                FIG_LABELS[name],
                f"{value:,.0f}",
                run_list(runs, "rps"),
                ms(med(runs, "p50_ms")),
                ms(med(runs, "p95_ms")),
                ms(med(runs, "p99_ms")),
                sum(x["errors"] for x in runs),
                ratio,
                f"{cpu:.2f} ms" if cpu else "n/a",
                cpu_ratio,
            )
        )
    return rows


def api(r: dict[str, Any]) -> list[str]:
    """Baselines, job status and job submission: each against its baseline."""
    if not r.get("throughput"):
        return []
    status, generate, errors = (
        TARGETS["status_over_b"],
        TARGETS["generate_over_c"],
        TARGETS["generate_errors"],
    )
    L = ["## Baselines", "", "On the same gunicorn command line as Darkroom's web.", ""]
    L += _throughput_table(r["throughput"], ["a_json", "b_read", "c_insert"], "a_json")
    L += [
        "",
        "## Job status: `GET /api/v1/jobs/status/{id}`",
        "",
        f"21 finished jobs read in turn, against baseline (b). Target: {status.text()} of (b).",
        "",
    ]
    L += _throughput_table(r["throughput"], ["b_read", "status"], "b_read")
    L += [
        "",
        "## Job submission: `POST /api/v1/jobs/generate`",
        "",
        f"Tiny demo jobs with the worker stopped, against baseline (c). Target: {generate.text()} "
        f"of (c), {errors.text()} errors. Jobs waiting at the end: "
        f"{r.get('pending_after_generate', 'n/a')}.",
        "",
    ]
    L += _throughput_table(r["throughput"], ["c_insert", "generate"], "c_insert")
    gw = r.get("generate_with_worker")
    if gw:
        L += [
            "",
            f"With the worker running (draining that backlog): {gw['rps']:,.0f} req/s, "
            f"p99 {ms(gw['p99_ms'])}, {gw['errors']} errors; lines with 'locked' or "
            f"'Traceback' in the web and worker logs: {r.get('api_log_trouble', 'n/a')}.",
        ]
    return [*L, ""]


def status_key(r: dict[str, Any]) -> list[str]:
    """Status with a bearer key (accounts on) against the same read with accounts off."""
    found = r.get("status_key")
    if not found:
        return []
    bound = TARGETS["status_key_over_status"]
    L = [
        "## Job status with an API key: `Authorization: Bearer dr_…`",
        "",
        f"A second stack with `DARKROOM_AUTH=on`; its user and key (scopes read and generate) "
        f"made with `flask users create` and `flask keys create`, its {found['jobs']} jobs "
        "submitted with the key. Runs alternate, round by round, with the same reads on the "
        f"stack with accounts off. Target: {bound.text()} of the reads with accounts off, "
        "judged on the median of the rounds' ratios (each round's two runs back to back).",
        "",
    ]
    L += _throughput_table(found["runs"], ["status", "status_key"], "status")
    counted = found.get("statements") or {}
    if counted.get("status") and counted.get("status_key"):
        off, on = counted["status"], counted["status_key"]
        every = on.get("last_used_every_s")
        L += [
            "",
            f"SQL statements per request, counted in-process on each stack's database: "
            f"{_statements(off)} with accounts off, {_statements(on)} with the key"
            + (
                f"; the key's `last_used_at` is also written at most once every {every:.0f} s."
                if every
                else "."
            ),
        ]
    return [*L, ""]


def _statements(found: dict[str, Any]) -> str:
    """How many statements one request ran, what kind, and the pool checkouts they took."""
    kinds: dict[str, int] = {}
    for statement in found["statements"]:
        kind = statement.split(" ", 1)[0].upper()
        kinds[kind] = kinds.get(kind, 0) + 1
    what = ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "none"
    checkouts = found["checkouts"]
    return f"{len(found['statements'])} ({what}; {checkouts} pool checkout{'s' * (checkouts != 1)})"


def sweep(r: dict[str, Any]) -> list[str]:
    """Throughput and latency of every figure at 1 to 64 connections."""
    points = r.get("sweep")
    if not points:
        return []
    L = [
        "## Latency against load",
        "",
        f"Each point: {r['options']['sweep_duration']:.0f} s at the given connections; "
        "req/s, then p50 / p99 latency.",
        "",
        row("connections", *(FIG_LABELS[k] for k in points)),
        "| ---: | " + " | ".join("---" for _ in points) + " |",
    ]
    first = next(iter(points.values()))
    for i, point in enumerate(first):
        cells = [
            f"{p['rps']:,.0f}, {p['p50_ms']:.1f} / {p['p99_ms']:.1f} ms"
            for p in (points[k][i] for k in points)
        ]
        L.append(row(point["connections"], *cells))
    return [*L, "", "![Throughput and latency against connections](bench-load.png)", ""]


def pages(r: dict[str, Any]) -> list[str]:
    """Each page's latency at the small and the large database, judged where it has a target."""
    found = r.get("pages")
    if not found:
        return []
    small, large = found["sizes"]
    filled = "; ".join(
        f"{int(n):,} jobs: {d['jobs']:,} job rows and {d['media']:,} media rows, filled in "
        f"{d['populate_s']:.1f} s"
        for n, d in found["db"].items()
    )
    L = [
        f"## Job list and gallery at {int(small):,} and {int(large):,} jobs",
        "",
        f"Target: p50 at the large size within {PAGE_TARGET.limit_text()} of the same page at "
        f"the small size. {filled}.",
        "",
        row(
            "page",
            f"p50 at {int(small):,}",
            "p95",
            f"p50 at {int(large):,}",
            "p95",
            "ratio of p50",
            "target",
            f"web CPU per request, {int(small):,} / {int(large):,}",
            "ratio by CPU",
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, by in found["pages"].items():
        s, b = by[small], by[large]
        ratio = b["p50_ms"] / s["p50_ms"] if s["p50_ms"] else 0
        bound = TARGETS.get(f"page_{name}")  # the gallery search has none: shown for info
        cs, cb = s.get("server_cpu_ms"), b.get("server_cpu_ms")
        cpu = f"{cs:.1f} / {cb:.1f} ms" if cs and cb else "n/a"
        cpu_ratio = f"{cb / cs:.2f}x" if cs and cb else ""
        L.append(
            row(
                PAGE_LABELS[name],
                ms(s["p50_ms"]),
                ms(s["p95_ms"]),
                ms(b["p50_ms"]),
                ms(b["p95_ms"]),
                f"{ratio:.2f}x",
                verdict(bound.met(ratio)) if bound else "info",
                cpu,
                cpu_ratio,
            )
        )
    paths = ", ".join(f"`{by[large]['path'][:80]}`" for by in found["pages"].values())
    return [
        *L,
        "",
        f"Paths at the large size: {paths}.",
        "",
        "![Pages at both sizes](bench-pages.png)",
        "",
    ]


def media(r: dict[str, Any]) -> list[str]:
    """Darkroom's media route against the same file as a static file."""
    m = r.get("media")
    if not m:
        return []
    L = [
        "## Media download",
        "",
        f"A {m['size_bytes']:,}-byte PNG over 4 connections: Darkroom's "
        "`GET /api/v1/media/{id}` against the same file from Flask's static route under the "
        "same gunicorn command line.",
        "",
        row("", "MB/s, median", "runs (MB/s)", "req/s", "latency p50", "p95", "ratio to baseline"),
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    st = med(m["runs"]["static"], "mb_per_s")
    for k, label in (("static", "static file (baseline)"), ("darkroom", "Darkroom media")):
        runs = m["runs"][k]
        v = med(runs, "mb_per_s")
        L.append(
            row(
                label,
                f"{v:,.0f}",
                run_list(runs, "mb_per_s"),
                f"{med(runs, 'rps'):,.0f}",
                ms(med(runs, "p50_ms")),
                ms(med(runs, "p95_ms")),
                f"{v / st if st else 0:.2f}",
            )
        )
    return [*L, ""]


def uploads(r: dict[str, Any]) -> list[str]:
    """Upload throughput of the media download's picture, beside it, and the bomb refused."""
    u = r.get("uploads")
    if not u:
        return []
    runs = u.get("runs") or []
    L = [
        "## Uploads: `POST /api/v1/uploads`",
        "",
        f"The same {u['size_bytes']:,}-byte PNG as the media download, posted by 4 clients "
        f"(Python threads, one keep-alive connection each) in {len(runs)} "
        f"round{'s' * (len(runs) != 1)} of about "
        f"{med(runs, 'duration_s'):.1f} s. Every upload is a different file (a counter in an "
        "ancillary chunk, dropped when it is stored), so each one is checked, decoded, "
        "re-encoded and written; MB/s is the bytes of the files stored (201) over the round's "
        "wall time, and any other answer is an error. Each round's uploads are deleted after "
        "it, untimed.",
        "",
        row("", "MB/s, median", "runs (MB/s)", "per s", "latency p50", "p95", "errors", "web CPU"),
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    if runs:
        cpu = cpu_ms(runs)
        L.append(
            row(
                "upload (201)",
                f"{med(runs, 'mb_per_s'):,.1f}",
                ", ".join(f"{x['mb_per_s']:,.1f}" for x in runs),
                f"{med(runs, 'uploads_per_s'):,.1f} uploads",
                ms(med(runs, "p50_ms")),
                ms(med(runs, "p95_ms")),
                sum(x["errors"] for x in runs),
                f"{cpu:.0f} ms per upload" if cpu else "n/a",
            )
        )
    m = r.get("media")
    if m:
        down = m["runs"]["darkroom"]
        cpu = cpu_ms(down)
        L.append(
            row(
                "media download, for comparison",
                f"{med(down, 'mb_per_s'):,.0f}",
                run_list(down, "mb_per_s"),
                f"{med(down, 'rps'):,.0f} downloads",
                ms(med(down, "p50_ms")),
                ms(med(down, "p95_ms")),
                sum(x["errors"] for x in down),
                f"{cpu:.1f} ms per download" if cpu else "n/a",
            )
        )
    b = u.get("bomb")
    if b:
        bound = TARGETS["upload_bomb_ms"]
        width, height = b["claims"]
        every = b["refused"] == b["count"] > 0
        L += [
            "",
            f"A bomb: a {b['bytes']:,}-byte PNG whose header claims {width:,} x {height:,} "
            f"pixels, sent {b['count']} times one after the other, each timed from the send to "
            f"the answer. Target: every answer 422, the slowest {bound.text()}.",
            "",
            row("", "answered 422", "named `image_too_large`", "p50", "p95", "max", "target"),
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
            row(
                "bomb upload",
                f"{b['refused']} of {b['count']}",
                b["named_too_large"],
                ms(b["p50_ms"]),
                ms(b["p95_ms"]),
                ms(b["max_ms"]),
                verdict(bound.met(b["max_ms"] if every else None)),
            ),
        ]
        others = {k: v for k, v in b["statuses"].items() if k != "422"}
        if others:
            answers = ", ".join(
                f"{n} x {k if k != '0' else 'no answer'}" for k, n in others.items()
            )
            L += ["", f"Other answers: {answers}."]
    return [*L, ""]


def facade(r: dict[str, Any]) -> list[str]:
    """The OpenAI face's overhead: from the job's completion to the answer's arrival."""
    f = r.get("facade")
    if not f or not f.get("samples"):
        return []
    bound = TARGETS["facade_overhead_p95"]
    overheads = [s["overhead_ms"] for s in f["samples"]]
    return [
        "## OpenAI face: `POST /v1/images/generations`",
        "",
        f"{f['requests']} demo jobs at 128x128 asked for one after the other through the face, "
        "with the worker running. Overhead: from the job's `completed_at` (written by the "
        "worker, read from the database) to the answer's arrival at the client: noticing "
        "the end (the face reads the status every 50 ms), reading the job, building and "
        f"sending the answer. Target: p95 {bound.text()}.",
        "",
        row("", "p50", "p95", "max", "whole request, p50", "errors"),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row(
            "completion -> answer",
            ms(f["p50_ms"]),
            ms(f["p95_ms"]),
            ms(max(overheads)),
            ms(f["total_p50_ms"]),
            str(f["errors"]),
        ),
        "",
    ]
