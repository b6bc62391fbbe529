"""Rate-limit counters that every web process on one box shares: a memory-mapped table.

A `limits` storage (`darkroom+shm://PATH`), used by `webapp.ratelimit` when no Redis is
configured.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

from limits.storage import Storage


class SharedMemoryStorage(Storage):
    """A `limits` storage in a small memory-mapped file that every web process maps.

    Fixed-window counters in an open-addressed table of `SLOTS` slots (nginx keeps its
    `limit_req` zones the same way). A hit is a few reads and writes of mapped memory under
    an exclusive `flock`, which the kernel releases if its holder dies, so a killed worker
    can never wedge the others. It replaced counters in a SQLite file, whose write lock two
    busy web processes spent a quarter of a status read queueing for.

    A key lives in one of `PROBES` slots after its hash. When all of them hold live
    windows (from about 9,000 clients within one minute on), the one of them that ends
    soonest is given up: that client's count starts again.
    """

    STORAGE_SCHEME = ["darkroom+shm"]
    SLOTS = 16384
    PROBES = 32
    MAGIC = b"darkroom-ratelimit-v1\0\0\0"  # 24 bytes
    HEADER = 64
    LOCK_TIMEOUT = 1.0
    SLOT = struct.Struct("<16sqd")  # key digest, count, window end (Unix time)

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = uri.split("://", 1)[1]
        self.size = self.HEADER + self.SLOTS * self.SLOT.size
        self._thread_lock = threading.Lock()
        self._pid: int | None = None
        self._fd = -1
        self._map: mmap.mmap | None = None

    @property
    def base_exceptions(self) -> type[Exception]:
        """Errors of this storage that the limiter may swallow."""
        return OSError

    def _mapped(self) -> mmap.mmap:
        """The table, mapped once per process (call with `_thread_lock` held).

        A forked child opens the file again: a `flock` is shared by every process holding
        the same open file, so it would not keep parent and child apart.
        """
        if self._pid != os.getpid() or self._map is None:
            fd = self._open()
            try:
                mapped = mmap.mmap(fd, self.size)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._map, self._pid = fd, mapped, os.getpid()
        return self._map

    def _open(self) -> int:
        """Open the table file, first making it if it is missing or of another layout.

        A new table is built beside the old file and renamed over it, never rewritten in
        place: a process that still maps the old file would die of SIGBUS if it shrank.
        Its pages are allocated up front, so a full disk fails here, as an `OSError` the
        hook lets through, and not as a SIGBUS on a later write.
        """
        for _attempt in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                self._flock(fd)
                try:
                    if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                        continue  # replaced since we opened it: open the new one
                    if os.fstat(fd).st_size == self.size and os.pread(fd, 24, 0) == self.MAGIC:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                        found, fd = fd, -1
                        return found
                    self._build()
                finally:
                    if fd >= 0:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            except FileNotFoundError:
                continue  # deleted since we opened it
            finally:
                if fd >= 0:
                    os.close(fd)
        raise OSError(f"could not open the rate-limit table {self.path}")

    def _build(self) -> None:
        """Write an empty table under a temporary name and rename it into place."""
        temporary = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.pwrite(fd, self.MAGIC, 0)
        except BaseException:
            os.close(fd)
            os.unlink(temporary)
            raise
        os.close(fd)
        os.replace(temporary, self.path)

    def _flock(self, fd: int) -> None:
        """Take the file lock, or give up after `LOCK_TIMEOUT` seconds (a holder stopped
        with SIGSTOP or a debugger must not hang every other process with it)."""
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                now = time.monotonic()
                deadline = deadline or now + self.LOCK_TIMEOUT
                if now > deadline:
                    raise TimeoutError(f"rate-limit table {self.path} stayed locked") from None
                time.sleep(0.0002)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[mmap.mmap]:
        with self._thread_lock:
            mapped = self._mapped()
            fd = self._fd
            self._flock(fd)
            try:
                yield mapped
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _find(self, mapped: mmap.mmap, digest: bytes, now: float) -> tuple[int, bool]:
        """The offset of the key's slot and whether it holds the key's live window;
        otherwise a free slot, an ended window's, or the one that ends soonest."""
        start = int.from_bytes(digest[:8], "little") % self.SLOTS
        spare, spare_end = -1, math.inf
        for probe in range(self.PROBES):
            offset = self.HEADER + ((start + probe) % self.SLOTS) * self.SLOT.size
            slot_digest, _count, ends = self.SLOT.unpack_from(mapped, offset)
            if slot_digest == digest:
                return offset, ends > now
            if ends < spare_end:  # free slots read as ending at 0
                spare, spare_end = offset, ends
        return spare, False

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.blake2b(key.encode(), digest_size=16).digest()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count a hit; a window that has ended starts again from this hit."""
        return self.hit(key, expiry, amount)[0]

    def hit(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """`incr` that also answers when the window ends (one lock instead of two)."""
        digest, now = self._digest(key), time.time()
        with self._locked() as mapped:
            offset, live = self._find(mapped, digest, now)
            if live:
                _digest, count, ends = self.SLOT.unpack_from(mapped, offset)
                count += amount
            else:
                count, ends = amount, now + expiry
            self.SLOT.pack_into(mapped, offset, digest, count, ends)
        return int(count), float(ends)

    def _read(self, key: str) -> tuple[int, float] | None:
        digest, now = self._digest(key), time.time()
        with self._locked() as mapped:
            offset, live = self._find(mapped, digest, now)
            if not live:
                return None
            _digest, count, ends = self.SLOT.unpack_from(mapped, offset)
        return int(count), float(ends)

    def get(self, key: str) -> int:
        """Hits in the current window."""
        found = self._read(key)
        return found[0] if found else 0

    def get_expiry(self, key: str) -> float:
        """When the current window ends (now, if there is none)."""
        found = self._read(key)
        return found[1] if found else time.time()

    def check(self) -> bool:
        """Whether the table can be mapped."""
        try:
            with self._thread_lock:
                self._mapped()
            return True
        except OSError:
            return False

    def reset(self) -> int | None:
        """Forget every counter."""
        with self._locked() as mapped:
            mapped[self.HEADER : self.size] = bytes(self.size - self.HEADER)
        return None

    def clear(self, key: str) -> None:
        """Forget one counter."""
        digest = self._digest(key)
        with self._locked() as mapped:
            offset, _live = self._find(mapped, digest, time.time())
            if self.SLOT.unpack_from(mapped, offset)[0] == digest:
                self.SLOT.pack_into(mapped, offset, digest, 0, 0.0)
