"""Run the Procfile's processes for end-to-end tests: real gunicorn, real huey_consumer.

`Stack` reads the `web:` and `worker:` lines of the project's Procfile and starts each one
through the shell, exactly as written, in its own process group, with its own instance
folder and port. Every process it starts is stopped when the stack is closed, and dies with
the test process on Linux even if the test run itself is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROCFILE = PROJECT_ROOT / "Procfile"
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
API = "/api/v1"
TERMINAL = frozenset({"completed", "failed", "cancelled"})

# Settings of the surrounding shell that would point the processes somewhere else.
_FOREIGN_ENV = (
    "DATABASE_URL", "REDIS_URL", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL", "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)  # fmt: skip


_PROVISION = """
import json, sys
from webapp import accounts, create_app
wanted = json.loads(sys.stdin.read())
with create_app().app_context():
    for name, admin in wanted["users"]:
        accounts.create_user(name, wanted["password"], admin=admin)
    keys = []
    for user, scopes, days in wanted["keys"]:
        found = accounts.find_user(user)
        keys.append(accounts.create_key(found, user + ": " + " ".join(scopes), scopes, days)[1])
print(json.dumps(keys))
"""


def procfile_commands(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's process types and their command lines."""
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Any:
    """A preexec hook that makes the child get SIGKILL when the test process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send a signal to the whole process group of a started process."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(
    proc: subprocess.Popen[bytes], timeout: float = 10.0, sig: int = signal.SIGTERM
) -> int | None:
    """Signal the process group (SIGTERM unless told), SIGKILL it if it has not ended in
    time; reap the leader."""
    if proc.poll() is None:
        kill(proc, sig)
        kill(proc, signal.SIGCONT)  # a stopped process only acts on SIGTERM once resumed
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc, signal.SIGKILL)
            proc.wait(timeout)
    # The leader is gone; make sure no member of its group (a gunicorn worker) outlives it.
    kill(proc, signal.SIGKILL)
    return proc.returncode


def process_state(pid: int) -> str | None:
    """A process's state letter from /proc (R, S, T for stopped, Z for zombie); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Stack:
    """The Procfile's `web` and `worker` on a free port with a fresh instance folder."""

    def __init__(
        self,
        root: Path,
        *,
        step_seconds: float = 0.05,
        lease_seconds: float = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.instance = self.root / "instance"
        self.instance.mkdir(exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.commands = procfile_commands()
        self.env = self._environment(step_seconds, lease_seconds, env or {})
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.http = requests.Session()

    def _environment(
        self, step_seconds: float, lease_seconds: float, extra: dict[str, str]
    ) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DARKROOM_") and k not in _FOREIGN_ENV
        }
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PORT=str(self.port),
            PYTHONUNBUFFERED="1",
            # gunicorn puts its control socket in $XDG_RUNTIME_DIR (else ~/.gunicorn); give
            # each stack its own so parallel stacks do not take each other's socket.
            XDG_RUNTIME_DIR=str(self.root),
            DARKROOM_INSTANCE_PATH=str(self.instance),
            DARKROOM_PUBLIC_URL=self.base_url,
            DARKROOM_DEMO_STEP_SECONDS=str(step_seconds),
            DARKROOM_LEASE_SECONDS=str(lease_seconds),
            # Tests submit far faster than people; tests/test_ratelimit.py sets real limits.
            DARKROOM_RATE_LIMIT_CREATE="100000/minute",
            DARKROOM_RATE_LIMIT_STATUS="100000/minute",
            DARKROOM_RATE_LIMIT_UPLOAD="100000/minute",
        )
        env.update(extra)
        return env

    # -- processes ------------------------------------------------------------------------

    def _start(self, name: str) -> subprocess.Popen[bytes]:
        """Start one Procfile process type through the shell, logging to the stack's folder."""
        number = sum(1 for _, log in self.started if log.name.startswith(f"{name}.")) + 1
        log_path = self.root / f"{name}.{number}.log"
        with open(log_path, "ab") as log:
            # `exec` makes the shell become the command (after expanding ${PORT:-8000} and
            # friends), so the process we signal and reap is the server itself. Otherwise a
            # killed server is re-parented to PID 1, which in a container may never reap it,
            # and a zombie still answers kill(pid, 0) as if it were alive.
            proc = subprocess.Popen(
                f"exec {self.commands[name]}",
                shell=True,
                start_new_session=True,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )
        self.started.append((proc, log_path))
        return proc

    def start_web(self, wait: bool = True, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """Start the web process and (unless told not to) wait until it answers."""
        self.web = self._start("web")
        if wait:
            self.wait_live(timeout)
        return self.web

    def flask(
        self, *args: str, stdin: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`flask --app wsgi ARGS` from the project root with this stack's settings, as an
        operator runs the headless commands (`users`, `keys`) beside the service."""
        return subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def provision(
        self,
        users: list[tuple[str, bool]],
        keys: list[tuple[str, tuple[str, ...], int | None]],
        password: str,
    ) -> list[str]:
        """Users (name, admin) and keys (user, scopes, expiry days) made by the functions
        behind the headless commands, in one process: set-up for tests of what keys do
        (each command is a process that mostly imports the app; the commands themselves are
        tested in tests/test_auth_api.py). Returns the keys."""
        done = subprocess.run(
            [str(VENV_BIN / "python"), "-c", _PROVISION],
            cwd=PROJECT_ROOT,
            env=self.env,
            input=json.dumps({"password": password, "users": users, "keys": keys}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        made: list[str] = json.loads(done.stdout.splitlines()[-1])
        return made

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start a worker process (the previous one, if any, is left alone)."""
        self.worker = self._start("worker")
        return self.worker

    def stop_worker(self) -> None:
        """Stop the current worker gracefully (SIGTERM, then SIGKILL)."""
        if self.worker is not None:
            stop(self.worker)

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Signal the current worker's process group; for SIGKILL, wait until it is gone."""
        assert self.worker is not None, "no worker was started"
        kill(self.worker, sig)
        if sig == signal.SIGKILL:
            self.worker.wait(10)

    def close(self) -> None:
        """Stop every process this stack started, newest first.

        A web process gets gunicorn's quick shutdown (SIGINT): on SIGTERM a gevent worker
        waits for every open keep-alive connection of the tests' clients and browsers, 10 s
        each time until SIGKILL. The tests of graceful stops send their own signals.
        """
        self.http.close()
        for proc, log in reversed(self.started):
            stop(proc, sig=signal.SIGINT if log.name.startswith("web.") else signal.SIGTERM)

    def leftovers(self) -> list[int]:
        """Pids of live (non-zombie) processes in the groups this stack started (Linux)."""
        groups = {proc.pid for proc, _ in self.started}
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # The fields after the ")" closing the command name: state, ppid, pgrp, ...
                state, _ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) in groups and state != "Z":
                alive.append(int(stat.parent.name))
        return alive

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self, lines: int = 40) -> str:
        """The tails of every process log, for failure messages."""
        parts = []
        for proc, log_path in self.started:
            state = "running" if proc.poll() is None else f"exit {proc.returncode}"
            parts.append(
                f"--- {log_path.name} (pid {proc.pid}, {state}) ---\n{tail(log_path, lines)}"
            )
        return "\n".join(parts)

    def log_text(self, name: str) -> str:
        """Everything the process types called `name` have logged so far."""
        return "".join(
            log.read_text(errors="replace")
            for _, log in self.started
            if log.name.startswith(f"{name}.")
        )

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        """Everything one started process has logged so far."""
        path = next(log for started, log in self.started if started is proc)
        return path.read_text(errors="replace")

    # -- HTTP -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """An absolute URL on the web process."""
        return path if path.startswith("http") else self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a path (or absolute URL) of the web process."""
        return self.http.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST to a path of the web process."""
        return self.http.post(self.url(path), timeout=10, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE a path of the web process."""
        return self.http.delete(self.url(path), timeout=10, **kwargs)

    def wait_live(self, timeout: float = 30.0) -> None:
        """Wait until `GET /api/v1/health/live` answers 200."""
        assert self.web is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise AssertionError(f"web exited with {self.web.returncode}\n{self.logs()}")
            try:
                if self.http.get(self.url(f"{API}/health/live"), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"web did not come up in {timeout}s\n{self.logs()}")

    def wait_for_worker(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until `GET /api/v1/health` reports a worker; return the health body."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.worker is not None and self.worker.poll() is not None:
                raise AssertionError(f"worker exited\n{self.logs()}")
            body = self.get(f"{API}/health").json()
            if body["services"]["worker"]:
                return body
            time.sleep(0.1)
        raise AssertionError(f"no worker reported in {timeout}s: {body}\n{self.logs()}")

    def submit(self, prompt: str, **body: Any) -> dict[str, Any]:
        """Submit a job, check the 201 answer's Location, and return its body."""
        response = self.post(f"{API}/jobs/generate", json={"prompt": prompt, **body})
        assert response.status_code == 201, (response.status_code, response.text)
        created = response.json()
        assert response.headers["Location"] == created["status_url"]
        return created

    def status(self, job_id: str) -> dict[str, Any]:
        """A job's status body."""
        response = self.get(f"{API}/jobs/status/{job_id}")
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def statuses(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Status bodies of several jobs, by id."""
        return {job_id: self.status(job_id) for job_id in job_ids}

    def wait_terminal(
        self, job_ids: Iterable[str], timeout: float = 30.0, interval: float = 0.1
    ) -> dict[str, dict[str, Any]]:
        """Poll until every job is completed, failed or cancelled; return their bodies."""
        waiting = list(job_ids)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while waiting:
            for job_id in list(waiting):
                body = self.status(job_id)
                if body["status"] in TERMINAL:
                    done[job_id] = body
                    waiting.remove(job_id)
            if not waiting:
                break
            if time.monotonic() > deadline:
                left = {j: (b["status"], b["progress"]) for j, b in self.statuses(waiting).items()}
                raise AssertionError(f"jobs not finished in {timeout}s: {left}\n{self.logs()}")
            time.sleep(interval)
        return done

    def wait_until(
        self, what: str, check: Any, timeout: float = 30.0, interval: float = 0.05
    ) -> Any:
        """Poll `check()` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.logs()}"
                )
            time.sleep(interval)

    # -- the instance folder --------------------------------------------------------------

    def db_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read rows from the app database file (a separate read-only connection)."""
        uri = f"file:{self.instance / 'darkroom.db'}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=15)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stored_media_ids(self) -> set[str]:
        """Ids of the media files present in storage (temporary `.part` files excluded)."""
        folder = self.instance / "media" / "generated"
        if not folder.is_dir():
            return set()
        return {p.name.split(".")[0] for p in folder.iterdir() if not p.name.startswith(".")}

    def databases_unlocked(self) -> bool:
        """True when no process holds a write lock on the app or queue database."""
        for name in ("darkroom.db", "huey.db"):
            conn = sqlite3.connect(self.instance / name, timeout=0.2, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                return False
            finally:
                conn.close()
        return True


@contextlib.contextmanager
def running_stack(root: Path, *, worker: bool = True, **options: Any) -> Iterator[Stack]:
    """A started stack, closed on the way out with a check that no process is left.

    Web and worker start at the same moment, as `honcho start` starts them.
    """
    stack = Stack(root, **options)
    try:
        stack.start_web(wait=False)
        if worker:
            stack.start_worker()
        stack.wait_live()
        yield stack
    finally:
        stack.close()
    left = stack.leftovers()
    assert not left, f"processes left running: {left}\n{stack.logs()}"
