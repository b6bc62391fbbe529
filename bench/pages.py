"""The job list and the gallery at a small and a large database (100 and 100,000 jobs).

Both databases are filled from the template of bench/populate.py; each page is read with
one connection, alternating between the sizes so that both see the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from bench import populate
from bench.harness import Bench, log
from bench.load import LoadResult, Spec
from tests.procs import API, Stack

PER_PAGE = 25


# Each page as a request, given the database's size (jobs) and file.
VARIANTS: dict[str, Callable[[int, Path], Spec]] = {
    "api_page1": lambda n, p: Spec.get(f"{API}/jobs?page=1&per_page={PER_PAGE}"),
    "api_deep": lambda n, p: Spec.get(
        f"{API}/jobs?page={max(1, -(-n // PER_PAGE))}&per_page={PER_PAGE}"
    ),
    "api_status_filter": lambda n, p: Spec.get(
        f"{API}/jobs?page=1&per_page={PER_PAGE}&status=completed"
    ),
    "gallery_index": lambda n, p: Spec.get("/"),
    # Deep, yet with a full page (24 cards) after the cursor at either size.
    "gallery_deep": lambda n, p: Spec.get(
        f"/gallery?cursor={populate.gallery_cursor(p, min(int(n * 0.96), n - 30))}",
        headers={"HX-Request": "true"},
    ),
    "gallery_search": lambda n, p: Spec.get(
        "/gallery?q=lighthouse+storm", headers={"HX-Request": "true"}
    ),
}


def _filled_stacks(bench: Bench, template_db: Path) -> tuple[dict[int, Stack], dict[str, Any]]:
    """A started web per database size, and what each database holds."""
    template = populate.read_template(template_db)
    stacks: dict[int, Stack] = {}
    info: dict[str, Any] = {}
    for n in (bench.args.small_jobs, bench.args.jobs):
        stack = bench.stack(f"pages{n}")
        db_path = stack.instance / "darkroom.db"
        t = time.monotonic()
        populate.empty_copy(template_db, db_path)
        populate.populate(db_path, n, template)
        info[str(n)] = {
            "jobs": populate.count_rows(db_path, "jobs"),
            "media": populate.count_rows(db_path, "media"),
            "populate_s": time.monotonic() - t,
        }
        stack.start_web(wait=False)
        stacks[n] = stack
    for stack in stacks.values():
        stack.wait_live(90)
    return stacks, info


def _summary(spec: Spec, runs: list[LoadResult]) -> dict[str, Any]:
    """The runs of one page at one size: medians of their percentiles, sums of counts."""
    return {
        "path": spec.paths[0],
        "requests": sum(x.requests for x in runs),
        "p50_ms": median(x.p50_ms for x in runs),
        "p95_ms": median(x.p95_ms for x in runs),
        "p99_ms": median(x.p99_ms for x in runs),
        "errors": sum(x.errors for x in runs),
        "server_cpu_ms": median(x.server_cpu_ms or 0.0 for x in runs),
    }


def measure(bench: Bench, template_db: Path) -> None:
    """The job list and the gallery at both sizes, page 1 and deep pages."""
    stacks, info = _filled_stacks(bench, template_db)
    out: dict[str, dict[str, Any]] = {}
    passes = 1 if bench.args.quick else 3
    for name, make in VARIANTS.items():
        specs = {n: make(n, stack.instance / "darkroom.db") for n, stack in stacks.items()}
        for n, stack in stacks.items():
            spec = specs[n]
            check = stack.get(spec.paths[0], headers=dict(spec.headers))
            if check.status_code != 200:
                raise RuntimeError(f"{name} at {n}: {check.status_code} {check.text[:200]}")
            bench.load(stack, spec, 1, 1)  # warm-up
        # Small and large alternate, one second at a time, so both see the same machine.
        runs: dict[int, list[LoadResult]] = {n: [] for n in stacks}
        for _ in range(passes):
            for n, stack in stacks.items():
                runs[n].append(bench.load(stack, specs[n], 1, 3 if passes == 1 else 1))
        out[name] = {str(n): _summary(specs[n], rs) for n, rs in runs.items()}
        log(
            f"pages {name}: "
            + ", ".join(f"{n}: p50 {v['p50_ms']:.1f} ms" for n, v in out[name].items())
        )
    sizes = [str(n) for n in (bench.args.small_jobs, bench.args.jobs)]
    bench.results["pages"] = {"sizes": sizes, "db": info, "pages": out}
    for stack in stacks.values():
        bench.close_stack(stack)
