"""Hostile clients on the wire, against the Procfile's real web process: raw sockets.

Chunked bodies over the limit, malformed and cut off; each answers as a careful server
should and leaves one INFO line in the log, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.procs import PROJECT_ROOT, VENV_BIN, Stack, free_port, running_stack

pytestmark = pytest.mark.e2e

LIMIT = 1024 * 1024  # DARKROOM_MAX_CONTENT_LENGTH's default


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("wire"), worker=False) as started:
        yield started


def exchange(stack: Stack, data: bytes, close_after: bool = False, timeout: float = 15) -> bytes:
    """Send raw bytes, then read the answer until the server closes (b"" if it said nothing)."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def job_body(padding: int) -> bytes:
    """A valid job whose prompt field is followed by `padding` bytes of whitespace."""
    return json.dumps({"prompt": "a lighthouse"}).encode()[:-1] + b" " * padding + b"}"


JSON_CHUNKED = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def job_total(stack: Stack) -> int:
    return int(stack.get("/api/v1/jobs").json()["total"])


def test_a_chunked_body_over_the_limit_gets_413_like_a_sized_one(stack: Stack) -> None:
    body = job_body(int(2.2 * LIMIT))
    before = job_total(stack)
    sized = exchange(
        stack,
        request_head(
            "/api/v1/jobs/generate",
            {"Content-Type": "application/json", "Content-Length": str(len(body))},
        )
        + body,
    )
    assert status_of(sized) == 413
    answer = exchange(stack, request_head("/api/v1/jobs/generate", JSON_CHUNKED) + chunked(body))
    assert status_of(answer) == 413, answer[:300]
    assert b"larger than the limit" in answer
    # One byte over: refused; exactly at the limit: taken.
    over = job_body(LIMIT - len(job_body(0)) + 1)
    answer = exchange(stack, request_head("/api/v1/jobs/generate", JSON_CHUNKED) + chunked(over))
    assert status_of(answer) == 413
    assert job_total(stack) == before
    exact = job_body(LIMIT - len(job_body(0)))
    answer = exchange(stack, request_head("/api/v1/jobs/generate", JSON_CHUNKED) + chunked(exact))
    assert status_of(answer) == 201, answer[:300]
    assert job_total(stack) == before + 1


def test_a_small_chunked_job_is_taken_whole(stack: Stack) -> None:
    body = job_body(10)
    answer = exchange(
        stack, request_head("/api/v1/jobs/generate", JSON_CHUNKED) + chunked(body, size=7)
    )
    assert status_of(answer) == 201, answer[:300]


def multipart_picture(side: int) -> tuple[bytes, str]:
    """A multipart body holding a PNG that does not compress (about 3 bytes a pixel)."""
    from PIL import Image

    buffer = io.BytesIO()
    noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    noise.save(buffer, "PNG", compress_level=0)
    boundary = "darkroom-wire-test"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="noise.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body += buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_upload_may_be_larger_than_other_bodies_sized_or_chunked(stack: Stack) -> None:
    body, content_type = multipart_picture(700)  # about 1.5 MB: over every other limit
    assert len(body) > LIMIT
    sized = {"Content-Type": content_type, "Content-Length": str(len(body))}
    answer = exchange(stack, request_head("/api/v1/uploads", sized) + body)
    assert status_of(answer) == 201, answer[:300]
    again = {"Content-Type": content_type, "Transfer-Encoding": "chunked"}
    answer = exchange(stack, request_head("/api/v1/uploads", again) + chunked(body))
    assert status_of(answer) == 201, answer[:300]
    assert b'"image/png"' in answer  # the same bytes: the same upload, answered again


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not a chunk size
        b"5\r\nhello!!!\r\n0\r\n\r\n",  # a chunk longer than it said
        b"5\r\nhello0\r\n\r\n",  # no line end after the chunk
    ],
)
def test_a_malformed_chunked_body_gets_400_without_a_traceback(stack: Stack, wire: bytes) -> None:
    answer = exchange(stack, request_head("/api/v1/jobs/generate", JSON_CHUNKED) + wire)
    assert status_of(answer) == 400, answer[:300]
    assert "Traceback" not in stack.log_text("web")
    assert stack.get("/api/v1/health/live").status_code == 200


def test_a_client_gone_mid_body_leaves_one_info_line(stack: Stack) -> None:
    before = stack.log_text("web")
    exchange(
        stack,
        request_head("/api/v1/jobs/generate", JSON_CHUNKED) + b"100\r\n" + b"x" * 50,
        close_after=True,
    )
    exchange(
        stack,
        request_head(
            "/api/v1/jobs/generate", {"Content-Type": "application/json", "Content-Length": "500"}
        )
        + b"{" * 50,
        close_after=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "cut off" not in stack.log_text("web")[len(before) :]:
        time.sleep(0.05)
    log = stack.log_text("web")[len(before) :]
    assert "cut off" in log, log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert stack.get("/api/v1/health/live").status_code == 200


def test_logs_have_no_traceback(stack: Stack, tmp_path: Path) -> None:
    """After everything above (the module's stack is shared): still no traceback, no 500."""
    log = stack.log_text("web")
    assert "Traceback" not in log
    assert '" 500 ' not in log


# -- slow clients -----------------------------------------------------------------------------


def hold_slow_connections(stack: Stack, count: int, partial: bytes) -> list[socket.socket]:
    """Open `count` connections that each send `partial` and then nothing more."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
        sock.sendall(partial)
        held.append(sock)
    return held


def web_rss(stack: Stack) -> int:
    """Resident bytes of the web process: gunicorn's arbiter and its workers."""
    assert stack.web is not None
    top = psutil.Process(stack.web.pid)
    return sum(p.memory_info().rss for p in [top, *top.children(recursive=True)])


def latencies(stack: Stack, path: str, count: int) -> list[float]:
    import requests

    took = []
    with requests.Session() as session:
        for _ in range(count):
            started = time.perf_counter()
            answer = session.get(stack.url(path), timeout=30)
            took.append(time.perf_counter() - started)
            assert answer.status_code == 200
    return sorted(took)


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /api/v1/health/li",  # half a request line
        b"POST /api/v1/jobs/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{",  # a body that trickles
    ],
    ids=["request-line", "body"],
)
def test_two_hundred_slow_clients_do_not_starve_the_web_tier(stack: Stack, partial: bytes) -> None:
    """200 connections that stop mid-request: everyone else is answered as usual."""
    job_id = stack.submit("a lighthouse")["id"]
    before = web_rss(stack)
    held = hold_slow_connections(stack, 200, partial)
    try:
        time.sleep(0.5)
        per_connection = (web_rss(stack) - before) / 200
        assert per_connection < 1024 * 1024, f"{per_connection / 1024:.0f} KB per slow client"
        live = latencies(stack, "/api/v1/health/live", 100)
        status = latencies(stack, f"/api/v1/jobs/status/{job_id}", 50)
    finally:
        for sock in held:
            sock.close()
    assert live[98] < 1.0, f"p99 of health/live with 200 slow clients: {live[98]:.3f}s"
    assert status[48] < 1.0, f"p98 of status with 200 slow clients: {status[48]:.3f}s"


# -- an open service on the network -----------------------------------------------------------


def test_the_procfile_web_warns_that_it_is_open_to_the_network(stack: Stack) -> None:
    """The Procfile binds 0.0.0.0: the log says who can use it and what to do."""
    log = stack.log_text("web")
    assert "[WARNING] Darkroom listens on http://0.0.0.0:" in log, log
    assert "has no accounts: anyone who can reach it" in log
    assert "Set DARKROOM_AUTH=on to require accounts and API keys" in log
    assert "README: Accounts and API keys" in log


@pytest.mark.parametrize(
    ("bind", "accounts"), [("127.0.0.1", "off"), ("0.0.0.0", "on")], ids=["loopback", "accounts"]
)
def test_a_loopback_or_accounts_web_does_not_warn(tmp_path: Path, bind: str, accounts: str) -> None:
    """Bound to 127.0.0.1 only this machine can reach it; with accounts on, every request
    names its user: no warning either way."""
    port = free_port()
    env = {
        **os.environ,
        "DARKROOM_INSTANCE_PATH": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "DARKROOM_AUTH": accounts,
    }
    web = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "wsgi:app", "--bind", f"{bind}:{port}",
         "--workers", "1", "--config", "python:webapp.serving"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.1)
    finally:
        web.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: nothing is in flight
        output = web.communicate(timeout=30)[0].decode(errors="replace")
    assert f"Listening at: http://{bind}:" in output, output
    assert "has no accounts" not in output, output
