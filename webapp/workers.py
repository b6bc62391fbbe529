"""Who a worker process is, and whether a worker named in a row is still alive.

Rows held by a worker name it: a job's `worker_id` is "host:pid", and a webhook delivery's
lease token starts with a tag of the host and the pid. The reaper and the webhook sweep free
a claim at once when its holder ran on this host and its process is gone, instead of waiting
for the lease to run out.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from datetime import datetime

from webapp.models import now_utc

# When this process started. A claim under our own pid that was last touched before then was
# made by a predecessor with the same pid: a restarted container's consumer is PID 1 again.
_process_started = now_utc()


def _restarted_clock() -> None:
    global _process_started
    _process_started = now_utc()


os.register_at_fork(after_in_child=_restarted_clock)


def worker_identity() -> str:
    """This process's name in the rows it holds: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def split_identity(worker_id: str) -> tuple[str, int | None]:
    """The host and pid of a "host:pid" name (pid None when it is not a number)."""
    host, _, pid_text = worker_id.rpartition(":")
    return host, int(pid_text) if pid_text.isdigit() else None


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def holder_token() -> str:
    """A lease token that names its holder: `<host tag>:<pid>:<random>`.

    For tables without a worker column (webhook events): the token carries what is needed
    to free the claim of a worker on this host that died mid-way. It fits 36 characters.
    """
    return f"{_host_tag()}:{os.getpid()}:{secrets.token_hex(8)}"


def holder_is_dead(token: str | None, claimed_at: datetime | None) -> bool:
    """True when a `holder_token`'s holder ran on this host and its process is gone."""
    host, _, rest = (token or "").partition(":")
    pid, sep, _ = rest.partition(":")
    if not sep or host != _host_tag():
        return False
    return local_worker_is_dead(f"{socket.gethostname()}:{pid}", claimed_at)


def local_worker_is_dead(worker_id: str | None, last_active: datetime | None = None) -> bool:
    """True when the worker ran on this host and its process is gone.

    `last_active` (when the holder last wrote) tells this process's own claims from those
    of an earlier process that had the same pid.
    """
    if not worker_id:
        return False
    host, pid = split_identity(worker_id)
    if host != socket.gethostname() or pid is None:
        return False
    if pid == os.getpid():
        return last_active is not None and last_active < _process_started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return process_state(pid) == "Z"


def process_state(pid: int) -> str | None:
    """The state letter of a process on this host (`R`, `S`, `Z`…), None if it is gone.

    A killed process that nobody reaped yet (e.g. under a PID 1 that never waits) is a
    zombie, `Z`: dead for our purposes.
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The state follows the command name, which is in parentheses and may contain spaces.
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None
