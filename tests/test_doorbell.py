"""The queue's doorbell: an idle consumer wakes on enqueue instead of waiting for a poll."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from webapp.doorbell import DoorbellHuey


def queue(tmp_path: Path) -> DoorbellHuey:
    return DoorbellHuey("bell-test", filename=str(tmp_path / "q.db"))


def test_a_ring_wakes_a_waiting_worker_long_before_its_timeout(tmp_path: Path) -> None:
    huey = queue(tmp_path)
    storage = huey.storage
    storage.listen(wait=30)
    got: list[bytes | None] = []
    waiter = threading.Thread(target=lambda: got.append(storage.dequeue()))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive(), "an idle worker waits for the bell"
    huey.storage.enqueue(b"job-1")  # another process's enqueue rings the same way
    waiter.join(timeout=10)
    assert got == [b"job-1"]
    assert time.monotonic() - started < 10, "woken by the ring, not by the 30 s timeout"


def test_without_listening_an_empty_queue_answers_at_once(tmp_path: Path) -> None:
    storage = queue(tmp_path).storage
    assert storage.blocking is False
    assert storage.dequeue() is None
    storage.enqueue(b"x")
    assert storage.dequeue() == b"x"


def test_a_dead_consumers_bell_is_cleared(tmp_path: Path) -> None:
    storage = queue(tmp_path).storage
    storage.bell_dir.mkdir(mode=0o700, exist_ok=True)
    stale = storage.bell_dir / "999999999.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(stale))
    sock.close()  # the file stays; nobody listens
    storage.enqueue(b"y")
    assert not stale.exists()
    assert storage.dequeue() == b"y"
