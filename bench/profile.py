"""Profile the real process behind one figure with py-spy: `python -m bench.profile FIGURE`.

FIGURE is one of: status, generate, list-deep, list-filter, gallery-index, gallery-deep,
media, queue, idle-worker.
It sets the figure up as bench/run.py does (same Procfile lines, same data), drives it with
the same load, runs `py-spy record --format raw` on the process(es) doing the work, and
prints where the samples were: the heaviest functions by inclusive and by own time, and
the heaviest whole stacks. The raw stacks are kept under --out (default
/tmp/darkroom-profile). Every load has a duration; every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench import load, pages, populate, prepare
from bench.harness import TINY, Bench, status_paths, submit
from bench.load import Spec
from bench.run import parse_args
from bench.throughput import GENERATE, MEDIA_CONNECTIONS
from tests.procs import API

FIGURES = (
    "status",
    "generate",
    "list-deep",
    "list-filter",
    "gallery-index",
    "gallery-deep",
    "media",
    "queue",
    "idle-worker",
)
# The page figures, by the name bench/pages.py measures them under.
PAGE_VARIANTS = {
    "list-deep": "api_deep",
    "list-filter": "api_status_filter",
    "gallery-index": "gallery_index",
    "gallery-deep": "gallery_deep",
}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed (it is in requirements-dev.txt)")
    return found


def record(pids: list[int], seconds: float, out: Path, idle: bool = False) -> list[Path]:
    """py-spy record each pid for `seconds` in parallel; returns the raw stack files."""
    procs, files = [], []
    for pid in pids:
        raw = out.with_name(f"{out.stem}-{pid}.txt")
        cmd = [py_spy(), "record", "--format", "raw", "--full-filenames", "-o", str(raw)]
        cmd += ["-d", str(max(1, round(seconds))), "-r", "200", "-p", str(pid)]
        if idle:
            cmd.append("--idle")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        files.append(raw)
    for p in procs:
        try:
            _, err = p.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            continue
        if p.returncode:
            print(f"py-spy failed: {err.decode(errors='replace')[-400:]}", file=sys.stderr)
    return [f for f in files if f.exists()]


def short(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`, for grouping by function."""
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    parts = Path(path).parts
    if "site-packages" in parts:
        path = "/".join(parts[parts.index("site-packages") + 1 :])
    elif "webapp" in parts:
        path = "/".join(parts[parts.index("webapp") :])
    elif "bench" in parts:
        path = "/".join(parts[parts.index("bench") :])
    else:
        path = Path(path).name
    return f"{m.group('func')} ({path})"


def package(frame: str) -> str:
    """The package (or our module) a shortened frame belongs to."""
    m = FRAME.match(frame)
    path = m.group("file") if m else ""
    if path.startswith("webapp/"):
        return path.rsplit(".", 1)[0]
    if "/" in path:
        return path.split("/", 1)[0]
    return f"stdlib/other: {path}" if path else "?"


def summarize(files: list[Path], top: int = 30) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    own_pkg: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [short(x) for x in stack.split(";")]
            # py-spy may put the process or thread first; drop it so threads add up.
            if frames and frames[0].startswith(("process ", "thread ")):
                frames = frames[1:]
            if not frames:
                continue
            total += n
            for fr in set(frames):
                inclusive[fr] += n
                if "(webapp/" in fr:
                    ours[fr] += n
            own[frames[-1]] += n
            own_pkg[package(frames[-1])] += n
    if not total:
        return "no samples"

    def block(title: str, counter: collections.Counter[str], limit: int) -> list[str]:
        rows = [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(limit)]
        return ["", title, *rows]

    # The trunk every sample passes through (server loop, WSGI entry) says nothing.
    branches = collections.Counter({k: v for k, v in inclusive.items() if v < 0.9 * total})
    lines = [f"{total} samples"]
    lines += block("Own time by package (where the CPU actually is):", own_pkg, 15)
    lines += block("Our code, inclusive (webapp/ functions and what they call):", ours, 20)
    lines += block("Inclusive, below the request trunk:", branches, top)
    lines += block("Own time by function:", own, top)
    return "\n".join(lines)


def web_pids(stack: Any) -> list[int]:
    return [c.pid for c in psutil.Process(stack.web.pid).children()]


def under_load(base: str, spec: Spec, connections: int, seconds: float) -> threading.Thread:
    t = threading.Thread(
        target=load.run,
        args=(base, spec),
        kwargs={"connections": connections, "duration": seconds + 2, "threads": 2},
        daemon=True,
    )
    t.start()
    time.sleep(1.0)  # the load is running before sampling starts
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument(
        "--jobs", type=int, default=100_000, help="jobs in the database of the page figures"
    )
    p.add_argument("--connections", type=int, default=16)
    p.add_argument(
        "--idle", action="store_true", help="include idle samples: wall-clock time, waits too"
    )
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "darkroom-profile")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(parse_args(["--idle-stacks", "0", "--budget", "100000"]))
    out = a.out / a.figure
    try:
        files: list[Path] = []
        pids: list[int] = []
        if a.figure in ("status", "generate", "media"):
            api, status_ids = prepare.api_stack(bench)
            pids = web_pids(api)
            if a.figure == "status":
                spec = Spec.get(*status_paths(status_ids))
            elif a.figure == "generate":
                spec = GENERATE
            else:
                media_id, _, _ = prepare.media_file(bench, api)
                spec = Spec.get(f"{API}/media/{media_id}")
            conns = MEDIA_CONNECTIONS if a.figure == "media" else a.connections
            t = under_load(api.base_url, spec, conns, a.seconds)
            files = record(pids, a.seconds, out, idle=a.idle)
            t.join()
        elif a.figure in PAGE_VARIANTS:
            api, _ = prepare.api_stack(bench)
            template_db = bench.tmp / "template.db"
            populate.make_template(api.instance / "darkroom.db", template_db)
            bench.close_stack(api)
            stack = bench.stack("pages")
            db_path = stack.instance / "darkroom.db"
            populate.empty_copy(template_db, db_path)
            populate.populate(db_path, a.jobs, populate.read_template(template_db))
            stack.start_web()
            pids = web_pids(stack)
            spec = pages.VARIANTS[PAGE_VARIANTS[a.figure]](a.jobs, db_path)
            t = under_load(stack.base_url, spec, 1, a.seconds)
            files = record(pids, a.seconds, out, idle=a.idle)
            t.join()
        elif a.figure == "queue":
            stack = bench.stack("queue")
            stack.start_web()
            for i in range(400):
                submit(stack, TINY, prompt=f"queue job {i}")
            worker = stack.start_worker()
            time.sleep(2.0)  # past the consumer's start-up
            pids = [worker.pid]
            files = record(pids, min(a.seconds, 8), out, idle=a.idle)
        elif a.figure == "idle-worker":
            stack = bench.stack("idle")
            stack.start_web()
            worker = stack.start_worker()
            stack.wait_for_worker(60)
            time.sleep(3.0)
            pids = [worker.pid]
            files = record(pids, a.seconds, out, idle=True)
        print(f"# {a.figure}: py-spy on pids {pids}; raw stacks in {a.out}")
        print(summarize(files))
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
