"""A doorbell for the SQLite queue: an idle worker wakes the moment a job is enqueued.

Huey's SQLite consumer polls with a growing pause (up to its max delay), so a job submitted
to an idle worker waits for the next poll, and polling faster costs CPU all day. Here every
enqueue also sends a one-byte datagram to each consumer process's Unix socket on this host;
an idle worker waits on that socket (up to `wait` seconds, then checks the queue anyway),
so it starts new work within milliseconds and otherwise sleeps. A lost datagram only
costs the old polling delay: the queue file stays the only source of truth.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import select
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.storage import SqliteStorage


class DoorbellSqliteStorage(SqliteStorage):
    """Huey's SQLite storage, plus a ring on enqueue and a wait for it on an empty dequeue."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Beside the queue file, so processes that share it find each other (even with a
        # private /tmp); Unix socket paths are limited to about 100 bytes, so a deep
        # instance folder uses a short folder in the temporary directory instead.
        queue_file = Path(self.filename).resolve()
        self.bell_dir = queue_file.parent / "bells"
        if len(str(self.bell_dir)) > 80:
            digest = hashlib.sha256(str(queue_file).encode()).hexdigest()[:16]
            self.bell_dir = Path(tempfile.gettempdir()) / f"darkroom-bell-{digest}"
        # Off until a consumer starts listening (tests and web processes never wait).
        self.blocking = False
        self.wait = 0.0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._listener_pid: int | None = None
        self._sender: socket.socket | None = None
        self._sender_pid: int | None = None

    def _create_connection(self) -> Any:
        """Huey's connection, with synchronous=NORMAL (WAL stays durable across crashes).

        The jobs table is the record and the reaper re-sends a lost message, so the queue
        need not sync its log on every enqueue, which doubled the cost of a submission.
        """
        conn = super()._create_connection()
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def listen(self, wait: float = 1.0) -> None:
        """Make this process a listening consumer: empty dequeues wait for a ring."""
        self._socket()
        self.wait = wait
        self.blocking = True  # tells huey's worker loop not to add its own sleep

    def enqueue(self, data: bytes, priority: int | None = None) -> None:
        """Store the message, then ring every listening consumer."""
        super().enqueue(data, priority)
        self.ring()

    def ring(self) -> None:
        """Wake consumers on this host; a stale socket of a dead consumer is removed."""
        try:
            bells = list(self.bell_dir.glob("*.sock"))
        except OSError:
            return
        if not bells:
            return
        sender = self._send_socket()
        for bell in bells:
            try:
                sender.sendto(b"!", str(bell))
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    bell.unlink()
            except OSError:
                pass  # a full buffer already holds a ring

    def dequeue(self) -> bytes | None:
        """Take a message; when there is none, wait for a ring (or the timeout) and retry."""
        data = super().dequeue()
        if data is not None or not self.blocking:
            return data
        sock = self._socket()
        readable, _, _ = select.select([sock], [], [], self.wait)
        if readable:
            with contextlib.suppress(BlockingIOError):
                sock.recv(16)
        return super().dequeue()

    def _send_socket(self) -> socket.socket:
        with self._lock:
            if self._sender is None or self._sender_pid != os.getpid():
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
                self._sender_pid = os.getpid()
            return self._sender

    def _socket(self) -> socket.socket:
        """This process's bell, bound on first use (a forked child binds its own)."""
        with self._lock:
            if self._listener is None or self._listener_pid != os.getpid():
                self.bell_dir.mkdir(mode=0o700, exist_ok=True)
                path = self.bell_dir / f"{os.getpid()}.sock"
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(str(path))
                sock.setblocking(False)
                atexit.register(_unlink, path)
                self._listener, self._listener_pid = sock, os.getpid()
            return self._listener


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class DoorbellHuey(SqliteHuey):
    """SqliteHuey whose consumers are woken by a doorbell instead of waiting for a poll."""

    storage_class = DoorbellSqliteStorage
