"""SQLite under concurrent load: the settings of DESIGN.md, then the real processes.

The first tests check, in this process, that every connection of the app gets the settings
the design asks for (WAL, `synchronous=NORMAL`, a busy timeout of at least 10 s, foreign
keys), that a write transaction takes the write lock up front (BEGIN IMMEDIATE), and that a
forked child starts with an empty connection pool. The end-to-end test then runs the
Procfile's gunicorn and huey_consumer, hammers the API with parallel creates, status reads
and listings while the worker completes the jobs, and expects no 5xx, no failed request
and no "database is locked" anywhere.

`DARKROOM_LOAD_SECONDS` (default 10; more for a soak) sets how long the load lasts and
`DARKROOM_LOAD_THREADS` (default 12) how many clients send it.
"""

from __future__ import annotations

import collections
import os
import random
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import text

from tests.procs import API, Stack, running_stack
from webapp.database import write_transaction
from webapp.extensions import db

LOAD_SECONDS = float(os.environ.get("DARKROOM_LOAD_SECONDS") or 10)
THREADS = int(os.environ.get("DARKROOM_LOAD_THREADS") or 12)
# At most this many creates a second from each client, so the worker (two threads on a
# small box) finishes the backlog soon after the load stops.
CREATES_PER_CLIENT_SECOND = 2.0
TINY_JOB = {"num_inference_steps": 1, "width": 128, "height": 128, "num_outputs": 1}
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
TROUBLE = re.compile(r"locked|Traceback|\bERROR\b|\[CRITICAL\]|WORKER TIMEOUT", re.IGNORECASE)


# -- the settings, in this process -----------------------------------------------------------


def test_sqlite_connections_get_the_designed_settings(app: Flask) -> None:
    """WAL, synchronous=NORMAL, busy timeout >= 10 s and foreign keys on every connection."""
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is a property of the file: any other process opening it sees it too.
    path = Path(app.instance_path) / "darkroom.db"
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_write_transactions_take_the_write_lock_up_front(app: Flask) -> None:
    """Inside `write_transaction()`, before any write, another writer is already locked out."""
    path = Path(app.instance_path) / "darkroom.db"
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with write_transaction():
            db.session.execute(text("SELECT 1"))  # a read only: a DEFERRED BEGIN locks nothing
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.execute("ROLLBACK")
        # A plain read transaction (outside write_transaction) takes no write lock.
        db.session.execute(text("SELECT 1"))
        assert db.session().in_transaction()
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        db.session.rollback()
    finally:
        other.close()


def test_a_forked_child_starts_with_an_empty_pool(app: Flask) -> None:
    """After fork the child drops the inherited connections (the parent keeps its own)."""
    db.session.execute(text("SELECT 1"))
    db.session.commit()  # the connection goes back to the pool
    assert db.engine.pool.checkedin() >= 1
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any cleanup
        code = 1
        try:
            empty = db.engine.pool.checkedin() == 0
            count = db.session.execute(text("SELECT count(*) FROM jobs")).scalar()
            os.write(write_fd, f"{empty} {count}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    answer = os.read(read_fd, 100).decode()
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == "True 0"
    # The parent's pooled connection still works.
    assert db.session.execute(text("SELECT count(*) FROM jobs")).scalar() == 0


# -- the real processes under load -----------------------------------------------------------


class Tally:
    """What the clients saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: collections.Counter[tuple[str, int]] = collections.Counter()
        self.failures: list[str] = []
        self.job_ids: list[str] = []
        self.slowest = 0.0

    def record(self, kind: str, response: requests.Response, seconds: float) -> None:
        with self.lock:
            self.answers[(kind, response.status_code)] += 1
            self.slowest = max(self.slowest, seconds)
            if not 200 <= response.status_code < 300:
                self.failures.append(f"{kind} {response.status_code}: {response.text[:300]}")

    def error(self, kind: str, exc: Exception) -> None:
        with self.lock:
            self.failures.append(f"{kind}: {type(exc).__name__}: {exc}")

    def created(self, job_id: str) -> None:
        with self.lock:
            self.job_ids.append(job_id)

    def some_job(self, rng: random.Random) -> str | None:
        with self.lock:
            if not self.job_ids:
                return None
            # Mostly recent jobs (the ones whose status changes), sometimes any.
            recent = self.job_ids[-50:]
            return rng.choice(recent if rng.random() < 0.8 else self.job_ids)


def client(stack: Stack, number: int, deadline: float, tally: Tally) -> None:
    """One client: creates, status reads and listings in a loop until the deadline."""
    rng = random.Random(number)
    session = requests.Session()
    next_create = time.monotonic()
    sequence = 0
    try:
        while time.monotonic() < deadline:
            sequence += 1
            now = time.monotonic()
            roll = rng.random()
            kwargs: dict[str, Any] = {}
            job_id = tally.some_job(rng)
            if now >= next_create and roll < 0.35:
                next_create = now + 1 / CREATES_PER_CLIENT_SECOND
                kind, method, path = "create", "POST", f"{API}/jobs/generate"
                kwargs["json"] = {
                    "prompt": f"load test {number}-{sequence} lighthouse at dusk",
                    "parameters": {**TINY_JOB, "seed": number * 100_000 + sequence},
                }
            elif roll < 0.85 and job_id:
                kind, method, path = "status", "GET", f"{API}/jobs/status/{job_id}"
            elif roll < 0.97:
                kind, method, path = "list", "GET", f"{API}/jobs"
                params: dict[str, Any] = {"per_page": 20, "page": rng.randint(1, 3)}
                if rng.random() < 0.5:
                    params["status"] = rng.choice(["pending", "processing", "completed"])
                kwargs["params"] = params
            else:
                kind, method, path = "health", "GET", f"{API}/health"
            started = time.monotonic()
            try:
                response = session.request(method, stack.url(path), timeout=30, **kwargs)
            except requests.RequestException as exc:
                tally.error(kind, exc)
                continue
            tally.record(kind, response, time.monotonic() - started)
            if kind == "create" and response.status_code == 201:
                tally.created(response.json()["id"])
    finally:
        session.close()


def access_log_statuses(web_log: str) -> collections.Counter[int]:
    """HTTP status codes of every request in gunicorn's access log."""
    return collections.Counter(int(m["status"]) for m in ACCESS_LINE.finditer(web_log))


@pytest.mark.e2e
def test_parallel_creates_and_reads_with_the_worker_running(tmp_path: Path) -> None:
    """Parallel clients against the real gunicorn while huey_consumer completes the jobs."""
    with running_stack(tmp_path, step_seconds=0) as stack:
        stack.wait_for_worker()
        tally = Tally()
        started = time.monotonic()
        deadline = started + LOAD_SECONDS
        with ThreadPoolExecutor(THREADS, thread_name_prefix="load") as pool:
            clients = [pool.submit(client, stack, n, deadline, tally) for n in range(THREADS)]
            for future in clients:
                future.result()
        load_took = time.monotonic() - started

        created = list(tally.job_ids)
        total = sum(tally.answers.values())
        done_during_load = stack.db_rows("SELECT count(*) FROM jobs WHERE status = 'completed'")
        summary = (
            f"{total} requests in {load_took:.1f}s by {THREADS} clients, "
            f"{len(created)} jobs created, {done_during_load[0][0]} completed meanwhile, "
            f"slowest answer {tally.slowest:.2f}s, answers {dict(tally.answers)}"
        )
        print(summary)
        assert not tally.failures, f"{len(tally.failures)} failed requests ({summary}):\n" + (
            "\n".join(tally.failures[:20])
        )
        kinds = {kind for kind, _ in tally.answers}
        assert kinds >= {"create", "status", "list"}, summary
        assert len(created) >= THREADS, summary
        assert total >= 10 * THREADS, summary
        # The worker was completing jobs while the load ran, not only afterwards.
        assert done_during_load[0][0] > 0, summary

        # Then it finishes every one of them, each with its one picture on disk.
        done = stack.wait_terminal(created, timeout=60, interval=0.2)
        assert {body["status"] for body in done.values()} == {"completed"}, summary
        stored = stack.stored_media_ids()
        media = [m["id"] for body in done.values() for m in body["media"]]
        assert len(media) == len(created) == len(set(media))
        assert set(media) <= stored
        counts = stack.db_rows("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
        assert counts == [("completed", len(created))], counts

        # Nothing went wrong on the server side either: every logged request answered below
        # 500, and no process logged a lock error, a traceback or an error line.
        web_log = stack.log_text("web")
        statuses = access_log_statuses(web_log)
        assert sum(statuses.values()) >= total
        assert not [code for code in statuses if code >= 500], statuses
        for name in ("web", "worker"):
            trouble = [line for line in stack.log_text(name).splitlines() if TROUBLE.search(line)]
            assert not trouble, f"{name} log:\n" + "\n".join(trouble[:20])

    # The database files are in WAL mode, as every process left them.
    for name in ("darkroom.db", "huey.db"):
        conn = sqlite3.connect(stack.instance / name)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal", name
        finally:
            conn.close()
