"""Slow clients: 200 connections that stop mid-request, and everyone else's latency.

Half send part of a request line, half the headers of a body they never finish: the
connections a slow-loris probe (or a bad mobile network) holds open. While they stay open,
`GET /api/v1/health/live` and status reads are loaded as usual; their p99 must stay under a
second. The web process's memory before and after says what each held connection costs.
"""

from __future__ import annotations

import contextlib
import socket
import time

import psutil

from bench.harness import Bench, log, status_paths
from bench.load import Spec
from tests.procs import API, Stack

SLOW_CONNECTIONS = 200
PARTIAL_LINE = b"GET /api/v1/health/li"
PARTIAL_BODY = (
    b"POST /api/v1/jobs/generate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n{"
)
CONNECTIONS = 4  # the load beside them: a few well-behaved clients


def _web_rss(stack: Stack) -> int:
    """Resident bytes of the web process: the arbiter and its workers."""
    assert stack.web is not None
    with contextlib.suppress(psutil.Error):
        top = psutil.Process(stack.web.pid)
        return sum(p.memory_info().rss for p in [top, *top.children(recursive=True)])
    return 0


def measure(bench: Bench, api: Stack, status_ids: list[str]) -> None:
    """p99 of health/live and status with 200 slow connections held open."""
    duration = max(2.0, bench.args.duration)
    rss_before = _web_rss(api)
    held: list[socket.socket] = []
    try:
        for n in range(SLOW_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", api.port), timeout=5)
            sock.sendall(PARTIAL_LINE if n % 2 else PARTIAL_BODY)
            held.append(sock)
        time.sleep(1.0)  # every connection has reached a worker and is being read
        rss_held = _web_rss(api)
        live = bench.load(api, Spec.get(f"{API}/health/live"), CONNECTIONS, duration)
        status = bench.load(api, Spec.get(*status_paths(status_ids)), CONNECTIONS, duration)
        still_open = sum(1 for sock in held if _open(sock))
    finally:
        for sock in held:
            sock.close()
    per_connection = max(0, rss_held - rss_before) / SLOW_CONNECTIONS
    bench.results["slow_clients"] = {
        "connections": SLOW_CONNECTIONS,
        "still_open": still_open,
        "live": live.as_dict(),
        "status": status.as_dict(),
        "rss_before": rss_before,
        "rss_held": rss_held,
        "rss_per_connection": per_connection,
    }
    log(
        f"slow clients: {still_open}/{SLOW_CONNECTIONS} held; health/live p99 "
        f"{live.p99_ms:.1f} ms, status p99 {status.p99_ms:.1f} ms, errors "
        f"{live.errors + status.errors}; {per_connection / 1024:.0f} KB per connection"
    )


def _open(sock: socket.socket) -> bool:
    """The server has not closed the connection (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
