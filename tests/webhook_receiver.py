"""A real webhook receiver for tests: a threaded HTTP server on loopback.

It records every request (method, path, headers, body, arrival time, peer address) and
answers each one as the test programmed it: a status, a delay, a hang, a redirect, a huge
or endless body, or a status line followed by a header that trickles in forever.

    with Receiver() as hook:
        hook.reply(Reply(500), Reply(200))   # the first two requests; later ones get `default`
        ... deliver to hook.url("/hook") ...
        [request] = hook.wait_for(1)
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = 64 * 1024
HUGE = 50 * 1024 * 1024  # more than any socket buffers hold: the sender sees the hang-up
MAX_SECONDS = 30.0  # no programmed behaviour outlives this, even if nobody closes the server


@dataclass(frozen=True)
class Reply:
    """How to answer one request."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before the status line
    hang: bool = False  # never answer (until the client hangs up or the receiver is closed)
    size: int = 0  # send a body of this many bytes (with Content-Length) instead of `body`
    endless: bool = False  # a chunked body that never ends
    trickle: float = 0.0  # status line, then one header byte per `trickle` seconds, forever
    trickle_body: float = 0.0  # full headers, then one body byte per `trickle_body` seconds

    @staticmethod
    def redirect(location: str, status: int = 302) -> Reply:
        """A redirect to another URL."""
        return Reply(status, b"moved", {"Location": location})


@dataclass
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    arrived: float  # time.time()
    arrived_monotonic: float
    peer: tuple[str, int]
    sent_bytes: int = 0  # body bytes the receiver managed to send back
    cut_off: bool = False  # the client closed the connection before the answer was sent
    hung_up: float | None = None  # time.monotonic() when the client gave up on a hang

    def header(self, name: str) -> str | None:
        """A header's value, looked up case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def header_map(self) -> dict[str, str]:
        """All headers with lower-cased names (as `standardwebhooks` expects them)."""
        return {k.lower(): v for k, v in self.headers}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: Receiver


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _handle(self) -> None:
        receiver = self.server.receiver
        self.connection.settimeout(MAX_SECONDS)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = Received(
            method=self.command,
            path=self.path,
            headers=list(self.headers.items()),
            body=body,
            arrived=time.time(),
            arrived_monotonic=time.monotonic(),
            peer=(str(self.client_address[0]), int(self.client_address[1])),
        )
        reply = receiver._record(record)
        self.close_connection = True
        try:
            self._answer(reply, record, receiver.closing)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            record.cut_off = True
        finally:
            receiver._finished(record)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def _hang(self, record: Received, closing: threading.Event) -> None:
        """Say nothing until the client hangs up (noted, to tell how many wait at once)."""
        deadline = time.monotonic() + MAX_SECONDS
        while not closing.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.02)
            if not readable:
                continue
            try:
                more = self.connection.recv(CHUNK)
            except OSError:
                more = b""
            if not more:  # end of stream: the client closed its side
                record.hung_up = time.monotonic()
                record.cut_off = True
                return

    def _answer(self, reply: Reply, record: Received, closing: threading.Event) -> None:
        if reply.hang:
            self._hang(record, closing)
            return
        if reply.delay and closing.wait(reply.delay):
            return
        if reply.trickle:
            self.wfile.write(f"HTTP/1.1 {reply.status} OK\r\nX-Slow: ".encode())
            self.wfile.flush()
            while not closing.wait(reply.trickle):
                self.wfile.write(b"a")
                self.wfile.flush()
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        if reply.endless:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b"x" * CHUNK
            chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            started = time.monotonic()
            while not closing.is_set() and time.monotonic() - started < MAX_SECONDS:
                self.wfile.write(chunk)
                record.sent_bytes += len(piece)
            return
        if reply.trickle_body:
            self.send_header("Content-Length", str(1_000_000))
            self.end_headers()
            self.wfile.flush()
            while not closing.wait(reply.trickle_body):
                self.wfile.write(b"a")
                self.wfile.flush()
                record.sent_bytes += 1
            return
        size = reply.size or len(reply.body)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if reply.size:
            piece = b"a" * CHUNK
            while record.sent_bytes < size and not closing.is_set():
                part = piece[: size - record.sent_bytes]
                self.wfile.write(part)
                record.sent_bytes += len(part)
        else:
            self.wfile.write(reply.body)
            record.sent_bytes = len(reply.body)
        self.wfile.flush()


class Receiver:
    """A webhook receiver on 127.0.0.1 (or ::1) at a free port, recording what it gets."""

    def __init__(
        self,
        *replies: Reply,
        host: str = "127.0.0.1",
        default: Reply | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        """`tls`: a server-side context to answer HTTPS with (its certificate and key)."""
        server_cls = _IPv6Server if ":" in host else _Server
        self.host = host
        self.scheme = "https" if tls else "http"
        self.server = server_cls((host, 0), _Handler)
        if tls is not None:
            # Each accepted connection does its handshake before it counts as a request; a
            # client that refuses the certificate ends it there, and nothing is recorded.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.receiver = self
        self.port = int(self.server.server_address[1])
        self.default = default or Reply()
        self.closing = threading.Event()
        self.connections = 0
        self._replies = list(replies)
        self._requests: list[Received] = []
        self._done: list[Received] = []
        self._changed = threading.Condition()
        original = self.server.process_request

        def counting(request: Any, client_address: Any) -> None:
            with self._changed:
                self.connections += 1
            original(request, client_address)

        self.server.process_request = counting  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    # -- programming ----------------------------------------------------------------------

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests like this, in order (then with `default`)."""
        with self._changed:
            self._replies.extend(replies)

    def url(self, path: str = "/hook") -> str:
        """The URL of a path on this receiver."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    # -- what arrived ---------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Every request so far, in order of arrival."""
        with self._changed:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` requests arrived; return all of them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} requests in {timeout}s, got {len(self._requests)}"
                    )
                self._changed.wait(left)
            return list(self._requests)

    def wait_answered(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` requests were answered (or their connection broke)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._done) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} answers not finished in {timeout}s")
                self._changed.wait(left)
            return list(self._done)

    def _record(self, record: Received) -> Reply:
        with self._changed:
            self._requests.append(record)
            reply = self._replies.pop(0) if self._replies else self.default
            self._changed.notify_all()
            return reply

    def _finished(self, record: Received) -> None:
        with self._changed:
            self._done.append(record)
            self._changed.notify_all()

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Release hanging answers and stop the server."""
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.close()


class Unanswered:
    """A port on 127.0.0.1 whose accept queue is full, so a new connection never completes.

    The kernel drops the SYN of any further connection while the one queued connection is
    never accepted: connecting hangs until the client's connect timeout.
    """

    def __enter__(self) -> int:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.filler = socket.create_connection(self.server.getsockname(), timeout=2)
        return int(self.server.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.filler.close()
        self.server.close()
