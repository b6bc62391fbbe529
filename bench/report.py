"""docs/benchmarks.md and docs/bench-*.png from one run's results.

The Notes section (between the notes markers) is kept from the previous file, and each run
leaves a machine-readable summary at the end that the next run shows as "previous" beside
its own values and adds to the History table: before/after comes for free.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench import report_web, report_worker
from bench.numbers import num, row, verdict
from bench.plots import plots
from bench.targets import evaluate

NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"
SUMMARY_RE = re.compile(r"<!-- bench-summary (\{.*?\}) -->", re.S)
HISTORY_RE = re.compile(r"<!-- history:start -->\n(.*?)<!-- history:end -->", re.S)
HISTORY_KEPT = 19  # earlier runs kept in the History table, below this run's row
DEFAULT_NOTES = (
    "Profiles, diagnoses and before/after notes go here; `make bench` keeps this section "
    "as it is and rewrites everything else."
)
# The figures the History table shows for each run (all of them are in the summary).
HEADLINE = (
    "status_over_b",
    "status_key_over_status",
    "generate_over_c",
    "page_api_deep",
    "page_gallery_index",
    "start_idle_p50",
    "start_after_idle_p50",
    "idle_cpu",
    "queue_jobs_per_s",
    "media_mb_s",
    "upload_mb_s",
)


def write(results: dict[str, Any], out: Path) -> None:
    """Write `out` and its plots beside it, keeping the notes and history already there."""
    out.parent.mkdir(parents=True, exist_ok=True)
    notes, previous, history = _previous(out)
    plots(results, out.parent)
    out.write_text(render(results, notes, previous, history))


def render(r: dict[str, Any], notes: str, previous: dict[str, Any] | None, history: str) -> str:
    """The whole document, given what the previous one held."""
    meta = r["meta"]
    figures = evaluate(r)
    L: list[str] = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`bench/run.py`) on {meta['date']} in {r['elapsed_s']:.0f} s. "
        "Each run rewrites everything but the Notes section; the previous run's values stand "
        "beside this run's, and every run is added to the History table.",
        "",
    ]
    L += _machine(r)
    L += _summary(r, figures, (previous or {}).get("values", {}))
    L += _method(r)
    L += report_web.api(r) + report_web.status_key(r) + report_web.sweep(r) + report_web.pages(r)
    L += report_worker.start(r) + report_worker.queue(r) + report_worker.thumbs(r)
    L += report_web.media(r) + report_web.uploads(r) + report_web.facade(r) + report_worker.rss(r)
    L += ["## Notes", "", NOTES_START, notes.strip(), NOTES_END, ""]
    L += _history(r, figures, history)
    return "\n".join(L) + "\n"


def _value_text(value: Any) -> str:
    """A figure's value as the summary and the history write it."""
    return num(value, 2) if isinstance(value, float) else str(value)


def _foreign_share(r: dict[str, Any]) -> float:
    """The share of the machine that processes outside the run used while it ran."""
    return float((r["meta"].get("foreign_cpu") or {}).get("share", 0.0))


def _summary(r: dict[str, Any], figures: list[dict[str, Any]], prev: dict[str, Any]) -> list[str]:
    L = [
        "## Summary",
        "",
        row("Figure", "This run", "Target", "Result", "Previous run"),
        "| --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        before = prev.get(f["key"])
        before_text = "" if before is None else _value_text(before)
        L.append(row(f["name"], f["shown"], f["target"], verdict(f["ok"]), before_text))
    share = _foreign_share(r)
    if share > 0.1:
        L += [
            "",
            f"**Warning:** processes outside this run used {share * 100:.0f}% of the machine's "
            "CPU capacity while it ran, so throughput and latency are depressed and noisy. The "
            "web-CPU-per-request columns hardly depend on that load: they are the steadier "
            "comparison in such a run.",
        ]
    missed = sum(1 for f in figures if f["ok"] is False)
    judged = sum(1 for f in figures if f["ok"] is not None)
    L += ["", f"Missed: {missed} of {judged} targets."]
    if r.get("skipped"):
        L += ["", "Skipped for lack of time: " + "; ".join(r["skipped"]) + "."]
    return [*L, "", "![Throughput and latency against load](bench-load.png)", ""]


def _history(r: dict[str, Any], figures: list[dict[str, Any]], history: str) -> list[str]:
    """The History table with this run on top, and the summary the next run reads."""
    meta = r["meta"]
    values = {
        f["key"]: (round(f["value"], 3) if isinstance(f["value"], float) else f["value"])
        for f in figures
    }
    headline = ", ".join(f"{k}={_value_text(v)}" for k, v in values.items() if k in HEADLINE)
    headline += f", other processes={_foreign_share(r) * 100:.0f}%"
    missed = sum(1 for f in figures if f["ok"] is False)
    L = [
        "## History",
        "",
        "<!-- history:start -->",
        "| date | code | headline values | missed |",
        "| --- | --- | --- | ---: |",
        row(meta["date"], meta["git"], headline, missed),
    ]
    L += [history.rstrip("\n")] if history.strip() else []
    L += ["<!-- history:end -->", ""]
    summary = {"date": meta["date"], "git": meta["git"], "values": values}
    L.append("<!-- bench-summary " + json.dumps(summary) + " -->")
    return L


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
        row("CPU", f"{meta['cpu']}, {meta['cores']} cores"),
        row("Memory", f"{meta['memory_gib']} GiB"),
        row("OS", meta["kernel"]),
        row("Python", f"{meta['python']} (SQLite {meta['sqlite']})"),
        row("Packages", packages),
        row("Load generator", tool),
        row("Code", f"{meta['git']}; fingerprint {meta.get('fingerprint', 'n/a')}"),
        row("Load average", loadavg),
        row("Other processes", foreign),
        row("Web command", f"`{r.get('web_command', '')}`"),
        row("Baseline command", f"`{r.get('baseline_command', '')}`"),
        row("Worker command", f"`{r.get('worker_command', '')}`"),
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


def _previous(path: Path) -> tuple[str, dict[str, Any] | None, str]:
    """The notes, the summary and the history rows of the document already at `path`."""
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
        history = "".join(x + "\n" for x in lines[:HISTORY_KEPT])
    return notes, summary, history
