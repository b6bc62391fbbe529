"""What the fake upstream servers share: fault injection, request records, a lifecycle and
the handler's answering helpers.

A fake subclasses `FakeServer` (its routes, models and pictures stay in its own module),
and its handler subclasses `FakeHandler`. Fakes served by `ThreadingHTTPServer` call
`serve(handler, port)` in their constructor; the ComfyUI fake brings its own server (HTTP
and a websocket on one port) and only takes the knobs and records from here.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, Self, TypeVar


@dataclass
class Gate:
    """A request held until the test releases it: `arrived` is set when it comes in."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Fault:
    """An injected answer (or delay) for the next request(s) of one route; a fake reads
    the fields its upstream has and leaves the others at their defaults."""

    route: str
    status: int = 0  # 0: no error answer (a hang only delays the normal one)
    times: int = 1
    hang: float = 0.0
    retry_after: str | None = None
    retry_after_ms: str | None = None
    body: Any = None
    gate: Gate | None = None


class Routed(Protocol):
    route: str


R = TypeVar("R", bound=Routed)


class FakeServer(Generic[R]):
    """The knobs and records every fake has; `R` is the fake's record of a request."""

    def __init__(self) -> None:
        # One re-entrant lock for the state and a condition on it, notified on each change,
        # so a test (or a waiting run) can wait for the fake rather than sleep.
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.closing = threading.Event()  # set on stop; wakes hanging and held handlers
        self.requests: list[R] = []
        self.faults: list[Fault] = []
        self.server: Any = None
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self.stopped = False

    def serve(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        """Listen on 127.0.0.1 (`port` 0: any free one) with `handler`; `start` serves."""
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.server.fake = self
        # A client that hangs up mid-answer is what the tests provoke, not an error to print.
        self.server.handle_error = lambda request, address: None
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        assert self._thread is not None
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving once (a fake may stop itself, as a server that dies)."""
        with self._stop_lock:
            if self.stopped:
                return
            self.stopped = True
        self.closing.set()
        with self.changed:
            self.changed.notify_all()
            for fault in self.faults:
                if fault.gate is not None:
                    fault.gate.release.set()
        # shutdown() waits for serve_forever, which never ran if the fake was not started.
        if self._thread is not None and self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs ----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def fail(self, route: str, status: int, *, times: int = 1, body: Any = None) -> None:
        """Answer the next `times` requests of a route with an error status."""
        self.add_fault(Fault(route, status, times, body=body))

    def hang(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` requests of a route for `seconds` before answering."""
        self.add_fault(Fault(route, 0, times, hang=seconds))

    # -- what happened --------------------------------------------------------------------

    def calls(self, route: str) -> list[R]:
        """The requests received for a route, in order."""
        with self.lock:
            return [r for r in self.requests if r.route == route]

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `check()` (called under the lock at each change) returns something."""
        with self.changed:
            result = self.changed.wait_for(check, timeout)
        if not result:
            raise AssertionError(f"timed out waiting for {what}")
        return result

    # -- behaviour, called by the handler -------------------------------------------------

    def record(self, request: R) -> None:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route == route and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def delayed(self, fault: Fault | None) -> bool:
        """Sit out a fault's gate and hang; True if the fake stopped meanwhile (the
        request is then left unanswered)."""
        if fault is None:
            return False
        if fault.gate is not None:
            fault.gate.arrived.set()
            fault.gate.release.wait(30)
            if self.closing.is_set():
                return True
        return bool(fault.hang) and self.closing.wait(fault.hang)


class FakeHandler(BaseHTTPRequestHandler):
    """A fake's request handler: keep-alive HTTP/1.1, quiet, answers in one write."""

    protocol_version = "HTTP/1.1"  # keep-alive, as requests' sessions use it
    disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stalls
    wbufsize = 64 * 1024

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `fake.requests` instead."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError

    def _read_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_body(self) -> Any:
        """The body: multipart parts by name, else JSON, else the bytes (None if empty)."""
        raw = self._read_raw()
        if self.headers.get_content_type() == "multipart/form-data":
            return multipart(self.headers.get("Content-Type", ""), raw)
        return json_or_raw(raw)

    def _send(self, status: int, data: bytes, content_type: str, **headers: str) -> None:
        """Answer; header names are given with `_` for `-`, and a `Content_Length` one
        replaces the true length (a fake that lies about its size)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up waiting (a hang)
            self.wfile.write(data)

    def _json(self, status: int, body: Any, **headers: str) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", **headers)


def json_or_raw(raw: bytes) -> Any:
    """A body as JSON, the bytes themselves if they are not JSON, None if empty."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw


def multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, str, bytes]]:
    """A multipart body's parts: name → (file name, content type, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            parts[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    return parts


def wait_until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something true (for what no fake announces, such as
    a clock running out or a row another process writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
