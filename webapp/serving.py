"""Hooks of the web process's gunicorn (the Procfile passes `--config python:webapp.serving`):
a turn for every connection under gevent, and a warning when an open Darkroom listens
beyond this machine.

gunicorn reads a settings module's functions as server hooks; hooks live here, and the one
setting no deployer needs to change (the access log's line, below); the command line keeps
the settings a deployer changes (binding, workers, worker class).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

# gunicorn's usual line, with the path alone in place of the path and query: with accounts
# on, a signed media URL's query works as a password for its picture, so logs keep none.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def post_request(worker: Any, req: Any, environ: dict[str, Any], resp: Any) -> None:
    """After each answer, let the worker's other connections take a turn.

    Under gevent a client that sends its next request at once (keep-alive: a proxy's pooled
    connection, a script's session, a load test) finds its socket readable, so the worker
    would serve it again without ever switching: a few busy connections then starve the
    others. Measured with wrk, 16 keep-alive connections on 2 cores, status reads: p99
    430-640 ms without this turn, 77-94 ms with it, at the same throughput (sync workers:
    16-19 ms; their price is that two stalled clients stop them).
    """
    from gevent import monkey

    if monkey.is_module_patched("socket"):  # a gevent worker; sync workers have no others
        import gevent

        gevent.sleep(0)


def when_ready(server: Any) -> None:
    """Say at start when Darkroom listens beyond this machine with no accounts to ask for.

    Every job, picture and the operator's provider credit is open to whoever can reach the
    address; on a trusted network that may be the plan, elsewhere it is a surprise. With
    `DARKROOM_AUTH=on` nothing is said: every request names its user.
    """
    from webapp.config import accounts_from_environment

    if accounts_from_environment():
        return
    for listener in getattr(server, "LISTENERS", []):
        sock = getattr(listener, "sock", None)
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        host = sock.getsockname()[0]
        if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            server.log.warning(
                "Darkroom listens on %s and has no accounts: anyone who can reach it can "
                "create, read and delete jobs and spend the configured providers' credit. "
                "Set DARKROOM_AUTH=on to require accounts and API keys (README: Accounts and "
                "API keys), bind to 127.0.0.1, or keep it on a trusted network.",
                listener,
            )
