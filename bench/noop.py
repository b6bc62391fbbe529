"""Huey's raw rate: a no-op task on the same storage as Darkroom's queue.

The consumer runs the Procfile's worker line with `webapp.worker.huey` replaced by
`bench.noop.huey`; the queue is a SqliteHuey file built exactly as webapp/extensions.py
builds Darkroom's (`utc=True, timeout=10`), at `BENCH_NOOP_DB`.
"""

from __future__ import annotations

import os

from huey import SqliteHuey

huey = SqliteHuey(
    "darkroom", filename=os.environ.get("BENCH_NOOP_DB", "/tmp/bench-noop.db"), utc=True, timeout=10
)


@huey.task()
def noop(index: int) -> None:
    """Nothing: what is left is the queue's own cost."""
    return None
