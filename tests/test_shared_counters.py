"""The shared-memory counter table: exact across processes and threads, safe to replace."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from webapp.shared_counters import SharedMemoryStorage


def _hammer(path: str, keys: int, hits: int) -> None:
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    for i in range(hits):
        storage.incr(f"key-{i % keys}", 60)


def test_counts_are_exact_across_processes_and_threads(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.shm")
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_hammer, args=(path, 7, 3000)) for _ in range(3)]
    for proc in procs:
        proc.start()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: _hammer(path, 7, 1000), range(4)))
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    assert sum(storage.get(f"key-{k}") for k in range(7)) == 3 * 3000 + 4 * 1000


def test_a_window_ends_and_starts_again(tmp_path: Path) -> None:
    storage = SharedMemoryStorage(f"darkroom+shm://{tmp_path / 'c.shm'}")
    assert storage.hit("k", 1)[0] == 1
    count, ends = storage.hit("k", 1)
    assert count == 2 and 0 < ends - time.time() <= 1
    assert storage.get("k") == 2 and storage.get_expiry("k") == ends
    assert storage.get("other") == 0
    time.sleep(1.05)
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1, "an ended window starts again from this hit"
    storage.clear("k")
    assert storage.get("k") == 0
    storage.incr("k", 60)
    storage.reset()
    assert storage.get("k") == 0
    assert storage.check()


class TinyTable(SharedMemoryStorage):
    SLOTS = 8
    PROBES = 4


def test_a_full_table_gives_up_the_window_that_ends_soonest(tmp_path: Path) -> None:
    storage = TinyTable(f"darkroom+shm://{tmp_path / 'tiny.shm'}")
    keys = [f"client-{i}" for i in range(40)]
    for n, key in enumerate(keys):
        storage.incr(key, 60 + n)  # later keys' windows end later
    for key in keys:
        storage.incr(key, 60)
    # Every live window is counted right or was given up for a newer one: never over.
    counts = [storage.get(key) for key in keys]
    assert all(c in (0, 1, 2) for c in counts)
    assert counts[-1] == 2, "the newest key keeps its count"
    assert sum(1 for c in counts if c) <= TinyTable.SLOTS


def test_a_file_of_another_layout_is_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "c.shm"
    path.write_bytes(b"not a counter table" * 10)
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    assert storage.incr("k", 60) == 1
    assert path.stat().st_size == storage.size
    assert SharedMemoryStorage(f"darkroom+shm://{path}").get("k") == 1, "kept once valid"


def _first_hits(storage: SharedMemoryStorage, barrier: threading.Barrier) -> None:
    barrier.wait(5)
    for _ in range(20):
        storage.incr("shared", 60)


def test_threads_sharing_one_table_never_lose_the_lock(tmp_path: Path) -> None:
    """First hits from several threads at once, on one storage object, in a fresh process state."""
    for round_ in range(40):
        storage = SharedMemoryStorage(f"darkroom+shm://{tmp_path / f'r{round_ % 3}.shm'}")
        barrier = threading.Barrier(6)

        threads = [
            threading.Thread(target=_first_hits, args=(storage, barrier), daemon=True)
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive(), f"round {round_}: a thread hung on the table lock"
        # Another open of the file can still take the lock: none was left behind.
        other = SharedMemoryStorage(f"darkroom+shm://{tmp_path / f'r{round_ % 3}.shm'}")
        assert other.get("shared") >= 120


def _hold_mapping(path: str, ready: Any, go: Any, result: Any) -> None:
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    storage.incr("old", 60)
    ready.set()
    go.wait(30)
    result.put(storage.incr("old", 60))  # would die of SIGBUS if the file had shrunk


class OtherLayout(SharedMemoryStorage):
    SLOTS = 64
    MAGIC = b"darkroom-ratelimit-v9\0\0\0"


def test_a_new_layout_never_pulls_the_file_from_under_a_running_process(tmp_path: Path) -> None:
    path = str(tmp_path / "c.shm")
    context = multiprocessing.get_context("fork")
    ready, go, result = context.Event(), context.Event(), context.Queue()
    proc = context.Process(target=_hold_mapping, args=(path, ready, go, result))
    proc.start()
    assert ready.wait(30)
    newer = OtherLayout(f"darkroom+shm://{path}")
    assert newer.incr("new", 60) == 1
    assert Path(path).stat().st_size == newer.size
    go.set()
    proc.join(30)
    assert proc.exitcode == 0, "the old process survived the new layout"
    assert result.get(timeout=5) == 2, "and kept counting in the table it had mapped"
    assert not list(tmp_path.glob("*.tmp"))
