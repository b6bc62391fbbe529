"""The summary's figures and the 18 targets they are judged by, as one table.

`FIGURES` lists every line of the summary in order: its key (also the key of its value in
the history), its name, and either a `Bound` it must keep or, for a figure reported without
a target, what it is read beside. `read` takes each figure's value off the results;
`evaluate` judges them all the same way.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from bench.load import percentile
from bench.numbers import PAGE_LABELS, cpu_ms, med, num, pct

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Bound:
    """A target: the figure's value must stand in relation `op` to `limit`."""

    op: str
    limit: float
    unit: str = ""  # how the limit reads: "share" writes 0.8 as 80%, else appended to it

    def limit_text(self) -> str:
        """The limit as the report writes it: 80%, 1.5x, 100 ms."""
        return pct(self.limit) if self.unit == "share" else f"{self.limit:g}{self.unit}"

    def text(self) -> str:
        """The whole target: >= 80%, < 100 ms; an exact count reads as the count alone."""
        return self.limit_text() if self.op == "==" else f"{self.op} {self.limit_text()}"

    def met(self, value: float | None) -> bool:
        """True when the value keeps the bound (a value that could not be read does not)."""
        return value is not None and OPS[self.op](value, self.limit)


@dataclass(frozen=True)
class Figure:
    """One line of the summary; `name` may name fields of its reading's context."""

    key: str
    name: str
    target: Bound | str


@dataclass(frozen=True)
class Reading:
    """A figure's value as read off the results, how it shows, and what its name needs."""

    value: Any
    shown: str
    context: dict[str, Any] = field(default_factory=dict)


SLOW_P99 = Bound("<", 1000, " ms")
START_P50 = Bound("<", 100, " ms")
START_P95 = Bound("<", 300, " ms")
PAGE_TARGET = Bound("<=", 1.5, "x")
PAGE_NAME = "{page}: p50 at {large:,} / at {small:,}"
AFTER_IDLE = "submit -> start after {idle_for:.0f}+ s idle"
# Every bomb must be refused in time, so the slowest of them is judged, not a percentile.
BOMB_MAX = Bound("<", 100, " ms")

FIGURES = (
    Figure("b_over_a", "(b) / (a), calibration", "about 55% on this kind of machine"),
    Figure("c_over_a", "(c) / (a), calibration", "about 30% on this kind of machine"),
    Figure("status_over_b", "status throughput / (b)", Bound(">=", 0.8, "share")),
    Figure(
        "status_key_over_status",
        "status throughput with a bearer key / with accounts off",
        Bound(">=", 0.9, "share"),
    ),
    Figure("generate_over_c", "generate throughput / (c)", Bound(">=", 0.5, "share")),
    Figure("generate_errors", "generate errors", Bound("==", 0)),
    Figure("slow_live_p99", "health/live p99 with {slow} slow clients held", SLOW_P99),
    Figure("slow_status_p99", "status p99 with {slow} slow clients held", SLOW_P99),
    Figure("slow_rss", "web memory per slow client held", "reported"),
    Figure("page_api_page1", PAGE_NAME, PAGE_TARGET),
    Figure("page_api_deep", PAGE_NAME, PAGE_TARGET),
    Figure("page_api_status_filter", PAGE_NAME, PAGE_TARGET),
    Figure("page_gallery_index", PAGE_NAME, PAGE_TARGET),
    Figure("page_gallery_deep", PAGE_NAME, PAGE_TARGET),
    Figure("start_idle_p50", "submit -> start, idle queue, p50", START_P50),
    Figure("start_idle_p95", "submit -> start, idle queue, p95", START_P95),
    Figure("start_after_idle_p50", AFTER_IDLE + ", p50", START_P50),
    Figure("start_after_idle_p95", AFTER_IDLE + ", p95", START_P95),
    Figure("idle_cpu", "idle worker CPU (last 20 s, busiest worker)", Bound("<", 2, "%")),
    Figure("queue_jobs_per_s", "queue: demo jobs/s through one worker", "vs Huey's no-op rate"),
    Figure("thumb_ms", "thumbnail of 2048x2048 (resize + WebP)", "vs Pillow's plain thumbnail()"),
    Figure("media_mb_s", "media download of {mb:.1f} MB", "vs the same file as a static file"),
    Figure("upload_mb_s", "upload of a {mb:.1f} MB PNG", "vs the media download"),
    Figure("upload_bomb_ms", "upload of a bomb refused (422), slowest of {count}", BOMB_MAX),
    Figure(
        "facade_overhead_p95",
        "OpenAI face: job completed -> answer received, p95",
        Bound("<", 100, " ms"),
    ),
    Figure("rss_web", "RSS of web (master + workers) after {jobs:,} jobs", "reported"),
    Figure("rss_worker", "RSS of worker after {jobs:,} jobs", "reported"),
)
TARGETS: dict[str, Bound] = {f.key: f.target for f in FIGURES if isinstance(f.target, Bound)}


def evaluate(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of the summary: name, value, target, verdict, and a key for history."""
    readings = read(r)
    out = []
    for f in FIGURES:
        got = readings.get(f.key)
        if got is None:  # its phase did not run (skipped for lack of time)
            continue
        bound = f.target if isinstance(f.target, Bound) else None
        out.append(
            {
                "key": f.key,
                "name": f.name.format(**got.context),
                "value": got.value,
                "shown": got.shown,
                "target": bound.text() if bound else f.target,
                "ok": bound.met(got.value) if bound else None,
            }
        )
    return out


def read(r: dict[str, Any]) -> dict[str, Reading]:
    """The value of every figure the results hold, by key."""
    readers = (
        _throughput, _status_key, _slow_clients, _pages, _start, _worker, _media, _uploads,
        _facade,
    )  # fmt: skip
    return {k: v for reader in readers for k, v in reader(r).items()}


def _by_cpu(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    """The ratio again by web CPU per request (base over runs), as the summary appends it."""
    mine, theirs = cpu_ms(runs), cpu_ms(base)
    return f"; by web CPU per request: {pct(theirs / mine)}" if mine and theirs else ""


def _throughput(r: dict[str, Any]) -> dict[str, Reading]:
    tp = r.get("throughput") or {}

    def rps(name: str) -> float | None:
        return med(tp[name], "rps") if tp.get(name) else None

    def by_cpu(name: str, base: str) -> str:
        return _by_cpu(tp.get(name) or [], tp.get(base) or [])

    a, b, c = rps("a_json"), rps("b_read"), rps("c_insert")
    s, g = rps("status"), rps("generate")
    out = {}
    if a and b:
        out["b_over_a"] = Reading(b / a, pct(b / a))
    if a and c:
        out["c_over_a"] = Reading(c / a, pct(c / a))
    if s and b:
        p99 = med(tp["status"], "p99_ms")
        shown = f"{pct(s / b)} ({s:,.0f} vs {b:,.0f} req/s; p99 {p99:.1f} ms)"
        out["status_over_b"] = Reading(s / b, shown + by_cpu("status", "b_read"))
    if g and c:
        shown = f"{pct(g / c)} ({g:,.0f} vs {c:,.0f} req/s)"
        out["generate_over_c"] = Reading(g / c, shown + by_cpu("generate", "c_insert"))
        errors = sum(x["errors"] for x in tp["generate"])
        out["generate_errors"] = Reading(errors, str(errors))
    return out


def _status_key(r: dict[str, Any]) -> dict[str, Reading]:
    runs = (r.get("status_key") or {}).get("runs") or {}
    on, off = runs.get("status_key") or [], runs.get("status") or []
    pairs = [b["rps"] / a["rps"] for a, b in zip(off, on, strict=False) if a["rps"]]
    if not pairs:
        return {}
    # Each round's two runs are back to back: their ratio is free of the machine's slower
    # and faster spells, which moved the ratio of the two medians from 78% to 100% between
    # runs of the same code.
    ratio = median(pairs)
    k, s = med(on, "rps"), med(off, "rps")
    errors = sum(x["errors"] for x in on + off)
    shown = (
        f"{pct(ratio)} (median of {len(pairs)} rounds' ratios; medians {k:,.0f} vs {s:,.0f} "
        f"req/s; p99 {med(on, 'p99_ms'):.1f} ms"
    )
    shown += f", {errors} errors)" if errors else ")"
    return {"status_key_over_status": Reading(ratio, shown + _by_cpu(on, off))}


def _slow_clients(r: dict[str, Any]) -> dict[str, Reading]:
    slow = r.get("slow_clients")
    if not slow:
        return {}
    context = {"slow": slow["connections"]}
    out = {}
    for name in ("live", "status"):
        run = slow[name]
        shown = f"{run['p99_ms']:.1f} ms (p50 {run['p50_ms']:.1f} ms, {run['rps']:.0f} req/s"
        shown += f", {run['errors'] + run['non_2xx']} errors)"
        out[f"slow_{name}_p99"] = Reading(run["p99_ms"], shown, context)
    per = slow["rss_per_connection"]
    out["slow_rss"] = Reading(per, f"{per / 1024:.0f} KB ({slow['still_open']} held)", context)
    return out


def _pages(r: dict[str, Any]) -> dict[str, Reading]:
    pages = (r.get("pages") or {}).get("pages") or {}
    sizes = (r.get("pages") or {}).get("sizes") or []
    if len(sizes) != 2:
        return {}
    small, large = sizes
    out = {}
    for name, by in pages.items():
        p_small, p_large = by[small]["p50_ms"], by[large]["p50_ms"]
        ratio = p_large / p_small if p_small else None
        shown = f"{num(ratio, 2)}x ({p_large:.1f} vs {p_small:.1f} ms)"
        c_small, c_large = by[small].get("server_cpu_ms"), by[large].get("server_cpu_ms")
        if c_small and c_large:
            shown += f"; web CPU per request {c_large / c_small:.2f}x"
        context = {"page": PAGE_LABELS[name], "small": int(small), "large": int(large)}
        out[f"page_{name}"] = Reading(ratio, shown, context)
    return out


def _start(r: dict[str, Any]) -> dict[str, Reading]:
    out = {}
    idle = [x["from_return_ms"] for x in r.get("start_latency_idle") or []]
    if idle:
        p50, p95 = percentile(idle, 50), percentile(idle, 95)
        out["start_idle_p50"] = Reading(p50, f"{p50:.0f} ms ({len(idle)} jobs)")
        out["start_idle_p95"] = Reading(p95, f"{p95:.0f} ms")
    after = r.get("idle") or []
    if after:
        lat = [e["latency"]["from_return_ms"] for e in after]
        context = {"idle_for": min(e["idle_for"] for e in after)}
        p50, p95 = percentile(lat, 50), percentile(lat, 95)
        out["start_after_idle_p50"] = Reading(p50, f"{p50:.0f} ms ({len(lat)} workers)", context)
        out["start_after_idle_p95"] = Reading(p95, f"{p95:.0f} ms", context)
        cpu = [e["cpu_pct_20s"] for e in after if e.get("cpu_pct_20s") is not None]
        if cpu:
            out["idle_cpu"] = Reading(max(cpu), f"{max(cpu):.2f}% of one core")
    return out


def _worker(r: dict[str, Any]) -> dict[str, Reading]:
    out = {}
    q, n = r.get("queue"), r.get("noop")
    if q and n:
        shown = (
            f"{q['jobs_per_s']:.1f} jobs/s vs {n['tasks_per_s']:,.0f} no-op tasks/s "
            f"({pct(q['jobs_per_s'] / n['tasks_per_s'])})"
        )
        out["queue_jobs_per_s"] = Reading(q["jobs_per_s"], shown)
    if t := r.get("thumbs"):
        ms = t["ms"]
        d, p = ms["darkroom_make_thumbnail"]["median"], ms["pillow_thumbnail_webp"]["median"]
        shown = f"{d:.1f} ms vs {p:.1f} ms plain thumbnail() + WebP ({d / p:.2f}x)"
        out["thumb_ms"] = Reading(d, shown)
    if rss := r.get("rss"):
        for key in ("web", "worker"):
            after_mb, before_mb = rss[f"{key}_after"]["total"], rss[f"{key}_before"]["total"]
            shown = f"{after_mb:.0f} MB (before: {before_mb:.0f} MB)"
            out[f"rss_{key}"] = Reading(after_mb, shown, {"jobs": rss["jobs"]})
    return out


def _media(r: dict[str, Any]) -> dict[str, Reading]:
    m = r.get("media")
    if not m:
        return {}
    dk = med(m["runs"]["darkroom"], "mb_per_s")
    st = med(m["runs"]["static"], "mb_per_s")
    shown = f"{dk:,.0f} MB/s vs {st:,.0f} MB/s static ({pct(dk / st if st else None)})"
    return {"media_mb_s": Reading(dk, shown, {"mb": m["size_bytes"] / 1e6})}


def _facade(r: dict[str, Any]) -> dict[str, Reading]:
    f = r.get("facade")
    if not f or f.get("p95_ms") is None:
        return {}
    shown = f"{f['p95_ms']:.1f} ms (p50 {f['p50_ms']:.1f} ms over {len(f['samples'])} requests"
    shown += f", {f['errors']} errors)" if f["errors"] else ")"
    value = f["p95_ms"] if not f["errors"] else None  # a failed request is a miss
    return {"facade_overhead_p95": Reading(value, shown)}


def _uploads(r: dict[str, Any]) -> dict[str, Reading]:
    u = r.get("uploads")
    if not u:
        return {}
    out = {}
    runs = u.get("runs") or []
    if runs:
        up = med(runs, "mb_per_s")
        shown = f"{num(up)} MB/s ({med(runs, 'uploads_per_s'):.1f} uploads/s, p50 "
        shown += f"{med(runs, 'p50_ms'):.0f} ms"
        errors = sum(x["errors"] for x in runs)
        shown += f", {errors} errors)" if errors else ")"
        media = r.get("media")
        if media:
            dk = med(media["runs"]["darkroom"], "mb_per_s")
            shown += f" vs {dk:,.0f} MB/s media download ({pct(up / dk if dk else None)})"
        out["upload_mb_s"] = Reading(up, shown, {"mb": u["size_bytes"] / 1e6})
    if b := u.get("bomb"):
        every = b["refused"] == b["count"] > 0  # a bomb answered otherwise is a miss
        shown = f"{b['max_ms']:.1f} ms (p50 {b['p50_ms']:.1f}, p95 {b['p95_ms']:.1f} ms; "
        shown += f"{b['refused']} of {b['count']} answered 422)"
        value = b["max_ms"] if every else None
        out["upload_bomb_ms"] = Reading(value, shown, {"count": b["count"]})
    return out
