"""Outbound HTTP that cannot be pointed at our own network (SSRF guard).

A webhook URL is only ever fetched at an address that was checked: the host is resolved
once, every address it resolves to must be public (or inside an allowed network), and the
connection goes to that very address with the original name in `Host` and TLS SNI, so a
DNS answer that changes between check and connect (DNS rebinding) gains nothing.
Environment proxies are never used, redirects never followed, answers read to a cap.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeURL(ValueError):
    """The URL may not be fetched: wrong scheme, credentials, or a non-public address."""


class UnresolvableURL(ValueError):
    """The URL's host has no address right now (it may later)."""


@dataclass(frozen=True)
class Target:
    """A checked destination: where to connect, and what to call it."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


@dataclass(frozen=True)
class Answer:
    """What came back from one POST."""

    status: int
    body: bytes
    latency_ms: float


_contexts = threading.local()


def tls_context(extra_cas: str = "") -> ssl.SSLContext:
    """What HTTPS receivers are checked against: the public authorities (certifi's Mozilla
    bundle) and, when `extra_cas` names a PEM file, the authorities in it (a private CA).

    Loading the bundle takes milliseconds, so each thread keeps the context it built: urllib3
    sets options on a context at every connection (ALPN among them), which must not happen
    while another thread's handshake reads it. Raises ValueError when the file cannot be
    read as certificates; a changed file is read again by a restarted process.
    """
    cache: dict[str, ssl.SSLContext] | None = getattr(_contexts, "by_bundle", None)
    if cache is None:
        cache = _contexts.by_bundle = {}
    context = cache.get(extra_cas)
    if context is None:
        context = urllib3.util.ssl_.create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        context.load_verify_locations(cafile=certifi.where())
        if extra_cas:
            try:
                context.load_verify_locations(cafile=extra_cas)
            except (OSError, ssl.SSLError) as exc:
                message = f"cannot read certificate authorities from {extra_cas}: {exc}"
                raise ValueError(message) from exc
        cache[extra_cas] = context
    return context


def parse_networks(value: str | Iterable[str] | None) -> list[Network]:
    """Read allowed networks from a comma-separated string or a list of CIDRs."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in a mapped, NAT64 or 6to4 IPv6 address."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64 or address in NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def address_allowed(address: IPAddress, allowed: list[Network]) -> bool:
    """Public addresses, and addresses inside an operator-allowed network."""
    if any(address.version == net.version and address in net for net in allowed):
        return True
    inner = _embedded_ipv4(address)
    if inner is not None:
        return address_allowed(inner, allowed)
    if address.is_multicast or address.is_reserved:
        return False  # reserved: e.g. IPv4-compatible ::a.b.c.d, which Python calls global
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False  # fec0::/10, deprecated but still routed inside some networks
    return address.is_global


def check_url_shape(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and path of an http(s) URL without credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL("the URL is malformed") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("URLs with credentials are not allowed")
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port or (443 if scheme == "https" else 80), path


def resolve(url: str, allowed: list[Network]) -> Target:
    """Check a URL and pick the address to connect to; raise if any address is not allowed."""
    scheme, host, port, path = check_url_shape(url)
    try:
        # An internationalised name in its ASCII (IDNA) form: the name DNS resolves, and
        # the only form a Host header or TLS SNI can carry.
        host = host.encode("idna").decode("ascii")
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableURL(f"{host} could not be resolved") from exc
    addresses = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        addresses.append(ipaddress.ip_address(text))
    if not addresses:
        raise UnresolvableURL(f"{host} has no address")
    for address in addresses:
        if not address_allowed(address, allowed):
            raise UnsafeURL(f"{host} resolves to a non-public address ({address})")
    return Target(scheme, host, port, path, str(addresses[0]))


def post(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout: float = 5.0,
    total_timeout: float = 15.0,
    max_answer: int = 64 * 1024,
    extra_cas: str = "",
) -> Answer:
    """POST to the checked address; no redirects, no proxies, at most `max_answer` bytes read.

    HTTPS checks the certificate against the name in the URL (also sent as SNI), trusting
    the public authorities plus those in the `extra_cas` PEM file, if given.
    """
    default_port = 443 if target.scheme == "https" else 80
    name = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal
    host_header = name if target.port == default_port else f"{name}:{target.port}"
    timeout = urllib3.Timeout(connect=connect_timeout, read=total_timeout, total=total_timeout)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ssl_context=tls_context(extra_cas),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, maxsize=1
        )
    # Socket timeouts bound each wait, not the sum of them: a receiver that trickles one
    # byte at a time would never time out. A watchdog shuts the socket at the deadline.
    sockets: list[socket.socket] = []
    fired = threading.Event()
    pool.ConnectionCls = _watched(pool.ConnectionCls, sockets)
    watchdog = threading.Timer(total_timeout, _shut, (sockets, fired))
    watchdog.daemon = True
    started = time.monotonic()
    watchdog.start()
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        if fired.is_set():  # the status and headers did not arrive whole in time
            response.close()
            raise urllib3.exceptions.TimeoutError("total timeout reached")
        deadline = started + total_timeout
        answer = b""
        try:
            # Read in pieces so a trickling answer cannot outlast the total timeout.
            while len(answer) < max_answer and time.monotonic() < deadline:
                piece = response.read(min(8192, max_answer - len(answer)), decode_content=False)
                if not piece:
                    break
                answer += piece
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            pass  # the status line arrived; a slow or broken body does not change the verdict
        finally:
            # Drop the connection rather than draining a huge or endless answer.
            response.close()
            response.release_conn()
        return Answer(response.status, answer, (time.monotonic() - started) * 1000)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if fired.is_set() and not isinstance(exc, urllib3.exceptions.TimeoutError):
            raise urllib3.exceptions.TimeoutError("total timeout reached") from exc
        raise
    finally:
        watchdog.cancel()
        pool.close()


def _watched(base: type, sockets: list[socket.socket]) -> type:
    """A connection class that hands its socket to the watchdog once connected."""

    class Watched(base):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    return Watched


def _shut(sockets: list[socket.socket], fired: threading.Event) -> None:
    """The deadline passed: end the connection, so any blocked read returns at once."""
    fired.set()
    for sock in sockets:
        # The plain socket's shutdown, also for a TLS socket: it only ends the stream.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
