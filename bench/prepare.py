"""The stacks the measured phases share, set up before the first measurement.

The API stack holds finished jobs to read and a 4 MB media item; the baseline stack serves
bench/baselines.py under the Procfile's own web line, with the same picture as a static file.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
from pathlib import Path

from PIL import Image

from bench import baselines, populate
from bench.harness import TINY, Bench, submit, wait_http, wait_jobs_done
from tests.procs import Stack

STATIC_PATH = "/static/picture.png"


def api_stack(bench: Bench) -> tuple[Stack, list[str]]:
    """Darkroom for the API figures, with the worker stopped, and the ids of its 21 jobs.

    Twenty tiny jobs for the status reads, and one at the default size that the page
    databases are later filled from (populate.make_template).
    """
    stack = bench.running_stack("api")
    return stack, status_jobs(stack)


def status_jobs(stack: Stack) -> list[str]:
    """Submit the 21 jobs whose status is read, let the worker finish them, stop it; the ids."""
    ids = [submit(stack, TINY, prompt=f"status probe {i}") for i in range(20)]
    ids.append(submit(stack, {"num_inference_steps": 1}, prompt=populate.TEMPLATE_PROMPT))
    if not wait_jobs_done(stack, 60):
        raise RuntimeError(f"setup jobs did not finish\n{stack.logs()}")
    stack.stop_worker()
    return ids


def static_file(bench: Bench) -> Path:
    """Where `media_file` writes the 4 MB PNG (the baseline's static file)."""
    return bench.tmp / "static" / STATIC_PATH.rsplit("/", 1)[1]


def media_file(bench: Bench, stack: Stack) -> tuple[str, str, int]:
    """A 4 MB PNG as one media item of the API stack and as the baseline's static file.

    Returns the media id, the static path and the size in bytes.
    """
    side = 1182  # 1182 x 1182 RGB noise: about 4.2 MB as PNG
    image = Image.frombytes("RGB", (side, side), random.Random(7).randbytes(side * side * 3))
    path = static_file(bench)
    path.parent.mkdir(exist_ok=True)
    image.save(path, "PNG", compress_level=1)
    size = path.stat().st_size
    conn = sqlite3.connect(stack.instance / "darkroom.db", timeout=15)
    try:
        media_id, old = conn.execute(
            "SELECT id, storage_path FROM media ORDER BY created_at LIMIT 1"
        ).fetchone()
        shutil.copyfile(path, stack.instance / "media" / old)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        conn.execute(
            "UPDATE media SET file_size_bytes = ?, width = ?, height = ?, sha256 = ? WHERE id = ?",
            (size, side, side, digest, media_id),
        )
        conn.commit()
    finally:
        conn.close()
    return media_id, STATIC_PATH, size


def baseline_stack(bench: Bench) -> Stack:
    """The baseline apps under the Procfile's web line with only the app swapped, started."""
    web = bench.procfile["web"]
    if "wsgi:app" not in web:
        raise RuntimeError(f"the Procfile's web line does not serve wsgi:app: {web}")
    db_path = bench.tmp / "baseline" / "baseline.db"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    baselines.init_db(str(db_path))
    stack = bench.stack(
        "baseline",
        env={"BENCH_BASELINE_DB": str(db_path), "BENCH_STATIC_DIR": str(bench.tmp / "static")},
    )
    stack.commands["web"] = web.replace("wsgi:app", "bench.baselines:app")
    bench.results["baseline_command"] = stack.commands["web"]
    bench.results["web_command"] = web
    bench.results["worker_command"] = bench.procfile["worker"]
    stack.start_web(wait=False)
    wait_http(stack, "/json")
    return stack
