"""docs/benchmarks.md and docs/bench-*.png from one run's results.

The Notes section (between the notes markers) is kept from the previous file, and each run
leaves a machine-readable summary at the end that the next run shows as "previous" beside
its own values and adds to the History table: before/after comes for free.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import median
from typing import Any

from bench.load import percentile

NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"
SUMMARY_RE = re.compile(r"<!-- bench-summary (\{.*?\}) -->", re.S)
HISTORY_RE = re.compile(r"<!-- history:start -->\n(.*?)<!-- history:end -->", re.S)
DEFAULT_NOTES = (
    "Profiles, diagnoses and before/after notes go here; `make bench` keeps this section "
    "as it is and rewrites everything else."
)

FIG_LABELS = {
    "a_json": "(a) bare Flask JSON",
    "b_read": "(b) Flask-SQLAlchemy read by primary key",
    "c_insert": "(c) insert one row, own transaction",
    "status": "GET /api/v1/jobs/status/{id}",
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
TARGETED_PAGES = ("api_page1", "api_deep", "api_status_filter", "gallery_index", "gallery_deep")


def _f(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**pass**" if ok else "**MISS**")


def _list(runs: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{x[key]:,.0f}" for x in runs)


def _med(runs: list[dict[str, Any]], key: str) -> float:
    return median(r[key] for r in runs) if runs else 0.0


# -- the figures ----------------------------------------------------------------------------


def _fig(key: str, name: str, value: Any, shown: str, target: str, ok: bool | None) -> dict:
    return {"key": key, "name": name, "value": value, "shown": shown, "target": target, "ok": ok}


def evaluate(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of the summary: name, value, target, verdict, and a key for history."""
    out: list[dict[str, Any]] = []
    tp = r.get("throughput") or {}

    def rps(name: str) -> float | None:
        return _med(tp[name], "rps") if tp.get(name) else None

    a, b, c = rps("a_json"), rps("b_read"), rps("c_insert")
    s, g = rps("status"), rps("generate")
    if a and b:
        out.append(
            _fig(
                "b_over_a",
                "(b) / (a), calibration",
                b / a,
                _pct(b / a),
                "about 55% on this kind of machine",
                None,
            )
        )
    if a and c:
        out.append(
            _fig(
                "c_over_a",
                "(c) / (a), calibration",
                c / a,
                _pct(c / a),
                "about 30% on this kind of machine",
                None,
            )
        )

    def by_cpu(name: str, base: str) -> str:
        mine, theirs = _cpu(tp.get(name) or []), _cpu(tp.get(base) or [])
        return f"; by web CPU per request: {_pct(theirs / mine)}" if mine and theirs else ""

    if s and b:
        p99 = _med(tp["status"], "p99_ms")
        shown = f"{_pct(s / b)} ({s:,.0f} vs {b:,.0f} req/s; p99 {p99:.1f} ms)" + by_cpu(
            "status", "b_read"
        )
        out.append(
            _fig("status_over_b", "status throughput / (b)", s / b, shown, ">= 80%", s / b >= 0.8)
        )
    if g and c:
        errors = sum(x["errors"] for x in tp["generate"])
        shown = f"{_pct(g / c)} ({g:,.0f} vs {c:,.0f} req/s)" + by_cpu("generate", "c_insert")
        out.append(
            _fig(
                "generate_over_c", "generate throughput / (c)", g / c, shown, ">= 50%", g / c >= 0.5
            )
        )
        out.append(
            _fig("generate_errors", "generate errors", errors, str(errors), "0", errors == 0)
        )
    pages = (r.get("pages") or {}).get("pages") or {}
    sizes = (r.get("pages") or {}).get("sizes") or []
    if len(sizes) == 2:
        small, large = sizes
        for name in TARGETED_PAGES:
            if name not in pages:
                continue
            p_small, p_large = pages[name][small]["p50_ms"], pages[name][large]["p50_ms"]
            ratio = p_large / p_small if p_small else None
            label = f"{PAGE_LABELS[name]}: p50 at {int(large):,} / at {int(small):,}"
            shown = f"{_f(ratio, 2)}x ({p_large:.1f} vs {p_small:.1f} ms)"
            c_small = pages[name][small].get("server_cpu_ms")
            c_large = pages[name][large].get("server_cpu_ms")
            if c_small and c_large:
                shown += f"; web CPU per request {c_large / c_small:.2f}x"
            out.append(
                _fig(
                    f"page_{name}",
                    label,
                    ratio,
                    shown,
                    "<= 1.5x",
                    ratio is not None and ratio <= 1.5,
                )
            )
    idle = [x["from_return_ms"] for x in r.get("start_latency_idle") or []]
    if idle:
        p50, p95 = percentile(idle, 50), percentile(idle, 95)
        out.append(
            _fig(
                "start_idle_p50",
                "submit -> start, idle queue, p50",
                p50,
                f"{p50:.0f} ms ({len(idle)} jobs)",
                "< 100 ms",
                p50 < 100,
            )
        )
        out.append(
            _fig(
                "start_idle_p95",
                "submit -> start, idle queue, p95",
                p95,
                f"{p95:.0f} ms",
                "< 300 ms",
                p95 < 300,
            )
        )
    after = r.get("idle") or []
    if after:
        lat = [e["latency"]["from_return_ms"] for e in after]
        idle_for = min(e["idle_for"] for e in after)
        p50, p95 = percentile(lat, 50), percentile(lat, 95)
        out.append(
            _fig(
                "start_after_idle_p50",
                f"submit -> start after {idle_for:.0f}+ s idle, p50",
                p50,
                f"{p50:.0f} ms ({len(lat)} workers)",
                "< 100 ms",
                p50 < 100,
            )
        )
        out.append(
            _fig(
                "start_after_idle_p95",
                f"submit -> start after {idle_for:.0f}+ s idle, p95",
                p95,
                f"{p95:.0f} ms",
                "< 300 ms",
                p95 < 300,
            )
        )
        cpu = [e["cpu_pct_20s"] for e in after if e.get("cpu_pct_20s") is not None]
        if cpu:
            out.append(
                _fig(
                    "idle_cpu",
                    "idle worker CPU (last 20 s, busiest worker)",
                    max(cpu),
                    f"{max(cpu):.2f}% of one core",
                    "< 2%",
                    max(cpu) < 2,
                )
            )
    q, n = r.get("queue"), r.get("noop")
    if q and n:
        shown = (
            f"{q['jobs_per_s']:.1f} jobs/s vs {n['tasks_per_s']:,.0f} no-op tasks/s "
            f"({_pct(q['jobs_per_s'] / n['tasks_per_s'])})"
        )
        out.append(
            _fig(
                "queue_jobs_per_s",
                "queue: demo jobs/s through one worker",
                q["jobs_per_s"],
                shown,
                "vs Huey's no-op rate",
                None,
            )
        )
    t = r.get("thumbs")
    if t:
        ms = t["ms"]
        d, p = ms["darkroom_make_thumbnail"]["median"], ms["pillow_thumbnail_webp"]["median"]
        shown = f"{d:.1f} ms vs {p:.1f} ms plain thumbnail() + WebP ({d / p:.2f}x)"
        out.append(
            _fig(
                "thumb_ms",
                "thumbnail of 2048x2048 (resize + WebP)",
                d,
                shown,
                "vs Pillow's plain thumbnail()",
                None,
            )
        )
    m = r.get("media")
    if m:
        dk = _med(m["runs"]["darkroom"], "mb_per_s")
        st = _med(m["runs"]["static"], "mb_per_s")
        shown = f"{dk:,.0f} MB/s vs {st:,.0f} MB/s static ({_pct(dk / st if st else None)})"
        out.append(
            _fig(
                "media_mb_s",
                f"media download of {m['size_bytes'] / 1e6:.1f} MB",
                dk,
                shown,
                "vs the same file as a static file",
                None,
            )
        )
    rss = r.get("rss")
    if rss:
        for key, label in (("web", "web (master + workers)"), ("worker", "worker")):
            after_mb, before_mb = rss[f"{key}_after"]["total"], rss[f"{key}_before"]["total"]
            out.append(
                _fig(
                    f"rss_{key}",
                    f"RSS of {label} after {rss['jobs']:,} jobs",
                    after_mb,
                    f"{after_mb:.0f} MB (before: {before_mb:.0f} MB)",
                    "reported",
                    None,
                )
            )
    return out


# -- the document ---------------------------------------------------------------------------


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


THROUGHPUT_HEAD = [
    _row(
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


def _cpu(runs: list[dict[str, Any]]) -> float | None:
    values = [x["server_cpu_ms"] for x in runs if x.get("server_cpu_ms")]
    return median(values) if values else None


def _throughput_table(r: dict[str, Any], names: list[str], baseline: str) -> list[str]:
    tp = r["throughput"]
    base = _med(tp[baseline], "rps") if tp.get(baseline) else None
    base_cpu = _cpu(tp.get(baseline) or [])
    rows = list(THROUGHPUT_HEAD)
    for name in names:
        runs = tp.get(name) or []
        if not runs:
            continue
        value, cpu = _med(runs, "rps"), _cpu(runs)
        if name == baseline:
            ratio = cpu_ratio = "1.00 (baseline)"
        else:
            ratio = f"{value / base:.2f}" if base else ""
            cpu_ratio = f"{base_cpu / cpu:.2f}" if base_cpu and cpu else ""
        rows.append(
            _row(
                FIG_LABELS[name],
                f"{value:,.0f}",
                _list(runs, "rps"),
                _ms(_med(runs, "p50_ms")),
                _ms(_med(runs, "p95_ms")),
                _ms(_med(runs, "p99_ms")),
                sum(x["errors"] for x in runs),
                ratio,
                f"{cpu:.2f} ms" if cpu else "n/a",
                cpu_ratio,
            )
        )
    return rows


def _machine(r: dict[str, Any]) -> list[str]:
    meta = r["meta"]
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    tool = meta["tool"]
    tool += f" ({meta['wrk']})" if tool == "wrk" else " (Python threads in 2 processes)"
    fc = meta.get("foreign_cpu") or {}
    foreign = (
        f"{fc.get('core_seconds', 0):.0f} CPU-seconds used by processes outside this run while "
        f"it ran ({fc.get('share', 0) * 100:.0f}% of the machine's capacity)"
        if fc
        else "n/a"
    )
    loadavg = (
        f"{meta['loadavg_start']} at the start, {meta.get('loadavg_end', 'n/a')} at "
        "the end (other processes on the machine share its cores)"
    )
    return [
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
        _row("CPU", f"{meta['cpu']}, {meta['cores']} cores"),
        _row("Memory", f"{meta['memory_gib']} GiB"),
        _row("OS", meta["kernel"]),
        _row("Python", f"{meta['python']} (SQLite {meta['sqlite']})"),
        _row("Packages", packages),
        _row("Load generator", tool),
        _row("Code", f"{meta['git']}; fingerprint {meta.get('fingerprint', 'n/a')}"),
        _row("Load average", loadavg),
        _row("Other processes", foreign),
        _row("Web command", f"`{r.get('web_command', '')}`"),
        _row("Baseline command", f"`{r.get('baseline_command', '')}`"),
        _row("Worker command", f"`{r.get('worker_command', '')}`"),
        "",
    ]


def _method(r: dict[str, Any]) -> list[str]:
    meta, o = r["meta"], r["options"]
    tool = "wrk -t2" if meta["tool"] == "wrk" else "the Python load generator"
    return [
        "## How it is measured",
        "",
        "- Every server runs on loopback with its own temporary instance folder, started from "
        "the Procfile's lines as written (`tests/procs.py`); the baselines are "
        "`bench/baselines.py` under the same gunicorn command line with only the app swapped, "
        "on their own SQLite file with Darkroom's settings (WAL, synchronous=NORMAL, "
        "busy_timeout, BEGIN IMMEDIATE for writes). Rate limits are 100000000/minute (the "
        "counters are still written); `DARKROOM_DEMO_STEP_SECONDS=0`.",
        f"- Throughput: {o['rounds']} rounds of {o['duration']:.0f} s per figure at "
        f"{o['connections']} connections ({tool}), figures interleaved in shuffled order within "
        "each round, after a 1 s warm-up; every run starts after `os.sync()` and 1 s of quiet, "
        "so that the pages a writing run dirtied are not written out during the next run; "
        "the median run counts, latency percentiles are "
        "medians over the runs. Darkroom's web is measured with its worker stopped, like the "
        "baselines, which have none; the worker's own costs have their own figures.",
        "- Web CPU per request: the CPU time of the gunicorn master and workers during a run "
        "(psutil), divided by its requests. It barely moves with whatever else the machine "
        "runs, so it cross-checks the throughput ratios on a shared machine.",
        "- Pages: one connection, alternating between the two database sizes in 1 s runs "
        "(3 each, after 1 s of warm-up); p50 is the latency of a request alone. The databases "
        "are copies of a real instance filled with SQL executemany from a real completed job "
        "and its media row (92% completed with a media row each, 5% failed, 3% cancelled, "
        "over 20 days).",
        "- Submit -> start: from the moment the POST returned to the job's `started_at`, which "
        "the worker writes when it claims the job (same clock; below zero when the worker "
        "started the job before the answer reached the client). Idle queue: "
        f"{o['latency_samples']} jobs, one at a time, 0.5-4 s apart, on a stack whose worker "
        f"ran nothing else. After idling: {o['idle_stacks']} separate stacks (web with "
        f"WEB_CONCURRENCY=1) left untouched for {o['idle_seconds']:.0f} s, one job each; "
        "psutil reads their worker's CPU time every second.",
        "",
    ]


def render(r: dict[str, Any], notes: str, previous: dict[str, Any] | None, history: str) -> str:
    meta, o = r["meta"], r["options"]
    figures = evaluate(r)
    prev_vals = (previous or {}).get("values", {})
    L: list[str] = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`bench/run.py`) on {meta['date']} in {r['elapsed_s']:.0f} s. "
        "Each run rewrites everything but the Notes section; the previous run's values stand "
        "beside this run's, and every run is added to the History table.",
        "",
    ]
    L += _machine(r)
    L += [
        "## Summary",
        "",
        _row("Figure", "This run", "Target", "Result", "Previous run"),
        "| --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        prev = prev_vals.get(f["key"])
        prev_text = "" if prev is None else (_f(prev, 2) if isinstance(prev, float) else str(prev))
        L.append(_row(f["name"], f["shown"], f["target"], _verdict(f["ok"]), prev_text))
    share = (meta.get("foreign_cpu") or {}).get("share", 0.0)
    if share > 0.1:
        L += [
            "",
            f"**Warning:** processes outside this run used {share * 100:.0f}% of the machine's "
            "CPU capacity while it ran, so throughput and latency are depressed and noisy. The "
            "web-CPU-per-request columns hardly depend on that load: they are the steadier "
            "comparison in such a run.",
        ]
    missed = [f["name"] for f in figures if f["ok"] is False]
    judged = sum(1 for f in figures if f["ok"] is not None)
    L += ["", f"Missed: {len(missed)} of {judged} targets."]
    if r.get("skipped"):
        L += ["", "Skipped for lack of time: " + "; ".join(r["skipped"]) + "."]
    L += ["", "![Throughput and latency against load](bench-load.png)", ""]
    L += _method(r)
    if r.get("throughput"):
        L += ["## Baselines", "", "On the same gunicorn command line as Darkroom's web.", ""]
        L += _throughput_table(r, ["a_json", "b_read", "c_insert"], "a_json")
        L += [
            "",
            "## Job status: `GET /api/v1/jobs/status/{id}`",
            "",
            "21 finished jobs read in turn, against baseline (b). Target: >= 80% of (b).",
            "",
        ]
        L += _throughput_table(r, ["b_read", "status"], "b_read")
        L += [
            "",
            "## Job submission: `POST /api/v1/jobs/generate`",
            "",
            "Tiny demo jobs with the worker stopped, against baseline (c). Target: >= 50% of "
            f"(c), 0 errors. Jobs waiting at the end: {r.get('pending_after_generate', 'n/a')}.",
            "",
        ]
        L += _throughput_table(r, ["c_insert", "generate"], "c_insert")
        gw = r.get("generate_with_worker")
        if gw:
            L += [
                "",
                f"With the worker running (draining that backlog): {gw['rps']:,.0f} req/s, "
                f"p99 {_ms(gw['p99_ms'])}, {gw['errors']} errors; lines with 'locked' or "
                f"'Traceback' in the web and worker logs: {r.get('api_log_trouble', 'n/a')}.",
            ]
        L.append("")
    L += _sweep(r) + _pages(r) + _start(r) + _queue(r) + _thumbs(r) + _media(r) + _rss(r)
    L += ["## Notes", "", NOTES_START, notes.strip(), NOTES_END, ""]
    values = {
        f["key"]: (round(f["value"], 3) if isinstance(f["value"], float) else f["value"])
        for f in figures
    }
    headline = ", ".join(
        f"{k}={_f(v, 2) if isinstance(v, float) else v}" for k, v in values.items() if k in HEADLINE
    )
    headline += f", other processes={share * 100:.0f}%"
    L += [
        "## History",
        "",
        "<!-- history:start -->",
        "| date | code | headline values | missed |",
        "| --- | --- | --- | ---: |",
        _row(meta["date"], meta["git"], headline, len(missed)),
    ]
    L += [history.rstrip("\n")] if history.strip() else []
    L += ["<!-- history:end -->", ""]
    summary = {"date": meta["date"], "git": meta["git"], "values": values}
    L.append("<!-- bench-summary " + json.dumps(summary) + " -->")
    del o
    return "\n".join(L) + "\n"


HEADLINE = (
    "status_over_b",
    "generate_over_c",
    "page_api_deep",
    "page_gallery_index",
    "start_idle_p50",
    "start_after_idle_p50",
    "idle_cpu",
    "queue_jobs_per_s",
    "media_mb_s",
)


def _sweep(r: dict[str, Any]) -> list[str]:
    sweep = r.get("sweep")
    if not sweep:
        return []
    L = [
        "## Latency against load",
        "",
        f"Each point: {r['options']['sweep_duration']:.0f} s at the given connections; "
        "req/s, then p50 / p99 latency.",
        "",
        _row("connections", *(FIG_LABELS[k] for k in sweep)),
        "| ---: | " + " | ".join("---" for _ in sweep) + " |",
    ]
    first = next(iter(sweep.values()))
    for i, point in enumerate(first):
        cells = [
            f"{p['rps']:,.0f}, {p['p50_ms']:.1f} / {p['p99_ms']:.1f} ms"
            for p in (sweep[k][i] for k in sweep)
        ]
        L.append(_row(point["connections"], *cells))
    return [*L, "", "![Throughput and latency against connections](bench-load.png)", ""]


def _pages(r: dict[str, Any]) -> list[str]:
    pages = r.get("pages")
    if not pages:
        return []
    small, large = pages["sizes"]
    filled = "; ".join(
        f"{int(n):,} jobs: {d['jobs']:,} job rows and {d['media']:,} media rows, filled in "
        f"{d['populate_s']:.1f} s"
        for n, d in pages["db"].items()
    )
    L = [
        f"## Job list and gallery at {int(small):,} and {int(large):,} jobs",
        "",
        f"Target: p50 at the large size within 1.5x of the same page at the small size. {filled}.",
        "",
        _row(
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
    for name, by in pages["pages"].items():
        s, b = by[small], by[large]
        ratio = b["p50_ms"] / s["p50_ms"] if s["p50_ms"] else 0
        verdict = _verdict(ratio <= 1.5) if name in TARGETED_PAGES else "info"
        cs, cb = s.get("server_cpu_ms"), b.get("server_cpu_ms")
        cpu = f"{cs:.1f} / {cb:.1f} ms" if cs and cb else "n/a"
        cpu_ratio = f"{cb / cs:.2f}x" if cs and cb else ""
        L.append(
            _row(
                PAGE_LABELS[name],
                _ms(s["p50_ms"]),
                _ms(s["p95_ms"]),
                _ms(b["p50_ms"]),
                _ms(b["p95_ms"]),
                f"{ratio:.2f}x",
                verdict,
                cpu,
                cpu_ratio,
            )
        )
    paths = ", ".join(f"`{by[large]['path'][:80]}`" for by in pages["pages"].values())
    return [
        *L,
        "",
        f"Paths at the large size: {paths}.",
        "",
        "![Pages at both sizes](bench-pages.png)",
        "",
    ]


def _start(r: dict[str, Any]) -> list[str]:
    idle, after = r.get("start_latency_idle"), r.get("idle")
    if not (idle or after):
        return []
    L = [
        "## Submit -> worker start",
        "",
        "Target: p50 < 100 ms and p95 < 300 ms, also after 2 minutes idle; an idle worker "
        "under 2% of one core.",
        "",
        _row("case", "samples", "p50", "p95", "max", "idle worker CPU"),
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
            _row(
                "idle queue, from the POST's return",
                *stats([x["from_return_ms"] for x in idle]),
                "",
            )
        )
        L.append(
            _row(
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
            _row(
                f"after idling {idle_s} s, from the POST's return",
                *stats([e["latency"]["from_return_ms"] for e in after]),
                cpu,
            )
        )
    return [*L, "", "![Submit to start](bench-start.png)", ""]


def _queue(r: dict[str, Any]) -> list[str]:
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
        _row("", "items", "seconds", "per second", "ratio to baseline"),
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    if n:
        L.append(
            _row(
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
            _row(
                "Darkroom demo jobs",
                f"{q['completed']:,} of {q['jobs']:,}",
                f"{q['span_seconds']:.2f}",
                f"{q['jobs_per_s']:,.1f}",
                ratio,
            )
        )
        L.append(
            _row(
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
            _row(
                "demo jobs at the default size (1024x1024, 4 steps), for scale",
                dq["jobs"],
                "",
                f"{dq['jobs_per_s']:.2f}",
                "",
            )
        )
    return [*L, ""]


def _thumbs(r: dict[str, Any]) -> list[str]:
    t = r.get("thumbs")
    if not t:
        return []
    ms = t["ms"]
    base = ms["pillow_thumbnail"]["median"]
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
        _row("", "median", "p95", "ratio to plain thumbnail()"),
        "| --- | ---: | ---: | ---: |",
    ]
    for k, label in labels.items():
        L.append(
            _row(label, _ms(ms[k]["median"]), _ms(ms[k]["p95"]), f"{ms[k]['median'] / base:.2f}")
        )
    return [*L, ""]


def _media(r: dict[str, Any]) -> list[str]:
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
        _row("", "MB/s, median", "runs (MB/s)", "req/s", "latency p50", "p95", "ratio to baseline"),
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    st = _med(m["runs"]["static"], "mb_per_s")
    for k, label in (("static", "static file (baseline)"), ("darkroom", "Darkroom media")):
        runs = m["runs"][k]
        v = _med(runs, "mb_per_s")
        L.append(
            _row(
                label,
                f"{v:,.0f}",
                _list(runs, "mb_per_s"),
                f"{_med(runs, 'rps'):,.0f}",
                _ms(_med(runs, "p50_ms")),
                _ms(_med(runs, "p95_ms")),
                f"{v / st if st else 0:.2f}",
            )
        )
    return [*L, ""]


def _rss(r: dict[str, Any]) -> list[str]:
    rss = r.get("rss")
    if not rss:
        return []

    def procs(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in d.items() if k != "total")

    return [
        "## Resident memory",
        "",
        f"After {rss['jobs']:,} jobs through the stack (RSS in MB, read with psutil).",
        "",
        _row("process", "before", "after", "each process, after"),
        "| --- | ---: | ---: | --- |",
        _row(
            "web (gunicorn master + workers)",
            f"{rss['web_before']['total']:.0f}",
            f"{rss['web_after']['total']:.0f}",
            procs(rss["web_after"]),
        ),
        _row(
            "worker (huey_consumer)",
            f"{rss['worker_before']['total']:.0f}",
            f"{rss['worker_after']['total']:.0f}",
            procs(rss["worker_after"]),
        ),
        "",
        "Before: after the idle-queue samples. The worker 'after' was started for the backlog "
        "and ran every one of those jobs.",
        "",
    ]


def _previous(path: Path) -> tuple[str, dict[str, Any] | None, str]:
    if not path.exists():
        return DEFAULT_NOTES, None, ""
    text = path.read_text()
    notes = DEFAULT_NOTES
    if NOTES_START in text and NOTES_END in text:
        notes = text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0]
    summary = None
    if m := SUMMARY_RE.search(text):
        try:
            summary = json.loads(m.group(1))
        except ValueError:
            summary = None
    history = ""
    if m := HISTORY_RE.search(text):
        lines = [
            x
            for x in m.group(1).splitlines()
            if x.startswith("| ") and not x.startswith(("| date", "| ---"))
        ]
        history = "".join(x + "\n" for x in lines[:19])
    return notes, summary, history


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    notes, previous, history = _previous(out)
    plots(results, out.parent)
    out.write_text(render(results, notes, previous, history))


# -- plots ----------------------------------------------------------------------------------


def plots(r: dict[str, Any], folder: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    colours = {
        "a_json": "#888888",
        "b_read": "#1f77b4",
        "c_insert": "#2ca02c",
        "status": "#d62728",
        "generate": "#9467bd",
    }
    sweep = r.get("sweep")
    if sweep:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
        for k, points in sweep.items():
            conns = [p["connections"] for p in points]
            left.plot(
                conns, [p["rps"] for p in points], "o-", color=colours[k], label=FIG_LABELS[k]
            )
            right.plot(
                [p["rps"] for p in points],
                [p["p50_ms"] for p in points],
                "o-",
                color=colours[k],
                label=f"{FIG_LABELS[k]} p50",
            )
            right.plot(
                [p["rps"] for p in points],
                [p["p99_ms"] for p in points],
                "x:",
                color=colours[k],
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
        fig.tight_layout()
        fig.savefig(folder / "bench-load.png", dpi=110)
        plt.close(fig)
    pages = r.get("pages")
    if pages:
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
        fig.tight_layout()
        fig.savefig(folder / "bench-pages.png", dpi=110)
        plt.close(fig)
    idle, after = r.get("start_latency_idle") or [], r.get("idle") or []
    if idle or after:
        fig, ax = plt.subplots(figsize=(7, 4))
        groups = [
            ("idle queue", [x["from_return_ms"] for x in idle]),
            ("after idling", [e["latency"]["from_return_ms"] for e in after]),
        ]
        for i, (label, values) in enumerate(groups):
            ax.scatter(
                [i + (j % 7 - 3) * 0.03 for j in range(len(values))], values, alpha=0.7, label=label
            )
        ax.axhline(100, color="green", ls="--", lw=1, label="p50 target 100 ms")
        ax.axhline(300, color="red", ls="--", lw=1, label="p95 target 300 ms")
        ax.set_xticks([0, 1], [g[0] for g in groups])
        ax.set_ylabel("POST returned -> started_at, ms")
        ax.set_title("Submit -> worker start")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(folder / "bench-start.png", dpi=110)
        plt.close(fig)
