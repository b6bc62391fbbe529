"""HTTP load: wrk when it is on PATH, else a Python load generator (processes x threads).

Both take the same request description and return the same `LoadResult`: requests, errors,
throughput, bytes and latency percentiles. Every run is bounded by its duration.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Spec:
    """What to send: one method, paths taken in turn, optional body and headers."""

    paths: tuple[str, ...]
    method: str = "GET"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def get(cls, *paths: str, headers: dict[str, str] | None = None) -> Spec:
        return cls(tuple(paths), "GET", None, tuple((headers or {}).items()))

    @classmethod
    def post_json(cls, path: str, payload: Any) -> Spec:
        return cls((path,), "POST", json.dumps(payload), (("Content-Type", "application/json"),))


@dataclass
class LoadResult:
    """One load run: counts, throughput and latency (milliseconds)."""

    tool: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    non_2xx: int
    rps: float
    bytes: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    error_detail: dict[str, int] = field(default_factory=dict)
    # CPU milliseconds the server's processes spent per request (filled in by the caller).
    server_cpu_ms: float | None = None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.duration_s / 1e6 if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str | None:
    """wrk on PATH (Debian's package), or None."""
    return shutil.which("wrk")


def wrk_version() -> str | None:
    path = wrk_path()
    if not path:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    return (
        (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else None
    )


def run(
    base_url: str,
    spec: Spec,
    *,
    connections: int = 16,
    duration: float = 8.0,
    threads: int = 2,
    tool: str | None = None,
) -> LoadResult:
    """Drive `spec` against `base_url` for `duration` seconds with `connections` clients."""
    threads = max(1, min(threads, connections))
    use = tool or ("wrk" if wrk_path() else "python")
    if use == "wrk":
        return _run_wrk(base_url, spec, connections, duration, threads)
    return _run_python(base_url, spec, connections, duration, threads)


# -- wrk ------------------------------------------------------------------------------------

_LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d,' ..
    '"mean":%f,"max":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.mean, latency.max))
end
"""

# Several paths: a request() function takes them in turn (each thread from its own offset).
_LUA_PATHS = r"""
local paths = {%(paths)s}
local counter = 0

function setup(thread)
  thread:set("offset", math.random(0, #paths - 1))
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  return wrk.format(nil, paths[(counter %% #paths) + 1])
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def _lua_script(spec: Spec) -> str:
    """Method, body and headers set once (wrk reuses the request); paths rotate if several."""
    lines = [f"wrk.method = {_lua_string(spec.method)}"]
    if spec.body is not None:
        lines.append(f"wrk.body = {_lua_string(spec.body)}")
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers]
    if len(spec.paths) > 1:
        lines.append(_LUA_PATHS % {"paths": ", ".join(_lua_string(p) for p in spec.paths)})
    return "\n".join(lines) + _LUA_DONE


def _run_wrk(
    base_url: str, spec: Spec, connections: int, duration: float, threads: int
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_lua_script(spec))
        script = fh.name
    try:
        seconds = max(1, round(duration))
        cmd = [
            wrk_path() or "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            script,
            base_url + (spec.paths[0] if len(spec.paths) == 1 else ""),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {out.returncode}): {out.stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    errors = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
    dur = data["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=dur,
        requests=int(data["requests"]),
        errors=sum(errors.values()),
        non_2xx=errors["status"],  # wrk counts answers >= 400 here
        rps=data["requests"] / dur if dur else 0.0,
        bytes=int(data["bytes"]),
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        mean_ms=data["mean"] / 1000,
        max_ms=data["max"] / 1000,
        error_detail={k: v for k, v in errors.items() if v},
    )


# -- the Python fallback --------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _client_thread(
    host: str,
    port: int,
    spec: Spec,
    deadline: float,
    offset: int,
    out: list[tuple[float, int, int]],
    errors: list[str],
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = dict(spec.headers)
    body = spec.body.encode() if spec.body is not None else None
    i = offset
    while time.monotonic() < deadline:
        path = spec.paths[i % len(spec.paths)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request(spec.method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
            continue
        out.append((time.perf_counter() - start, resp.status, len(data)))
    conn.close()


def _client_process(
    args: tuple[str, int, Spec, float, int, int],
) -> tuple[list[tuple[float, int, int]], list[str]]:
    host, port, spec, deadline_in, n_threads, offset = args
    deadline = time.monotonic() + deadline_in
    out: list[tuple[float, int, int]] = []
    errors: list[str] = []
    workers = [
        threading.Thread(
            target=_client_thread, args=(host, port, spec, deadline, offset + i, out, errors)
        )
        for i in range(n_threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(deadline_in + 30)
    return out, errors


def _run_python(
    base_url: str, spec: Spec, connections: int, duration: float, processes: int
) -> LoadResult:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    per = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    jobs = [(host, port, spec, duration, n, i * 7919) for i, n in enumerate(per) if n]
    start = time.monotonic()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(jobs)) as pool:
        results = pool.map(_client_process, jobs, chunksize=1)
    elapsed = time.monotonic() - start
    samples = [s for part, _ in results for s in part]
    errs = [e for _, part in results for e in part]
    lat = [s[0] * 1000 for s in samples]
    status_errors = sum(1 for s in samples if s[1] >= 400)
    detail: dict[str, int] = {}
    for e in errs:
        detail[e] = detail.get(e, 0) + 1
    if status_errors:
        detail["status"] = status_errors
    dur = min(elapsed, duration) if samples else elapsed
    return LoadResult(
        tool="python",
        connections=connections,
        duration_s=dur,
        requests=len(samples),
        errors=len(errs) + status_errors,
        non_2xx=sum(1 for s in samples if not 200 <= s[1] <= 299),
        rps=len(samples) / dur if dur else 0.0,
        bytes=sum(s[2] for s in samples),
        p50_ms=percentile(lat, 50),
        p90_ms=percentile(lat, 90),
        p95_ms=percentile(lat, 95),
        p99_ms=percentile(lat, 99),
        mean_ms=sum(lat) / len(lat) if lat else 0.0,
        max_ms=max(lat) if lat else 0.0,
        error_detail=detail,
    )
