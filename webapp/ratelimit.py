"""Rate limits that hold across every web process: counters in shared storage.

Counters kept in each process's memory would let N gunicorn workers grant N times the
limit, and one threaded process instead costs about half the throughput on two cores. So
the counters live where all processes see them: on one box, a small memory-mapped table in
the instance folder (`ratelimit.shm`, see `webapp.shared_counters`); with `REDIS_URL`, Redis,
which every machine shares.

The counting is the `limits` package's (its storages and its fixed window); the Flask side is
the few lines below: one counter hit before a limited endpoint runs, the `X-RateLimit-*`
headers on its answer, 429 with `Retry-After` over the limit. Flask-Limiter did this with
enough per-request machinery to cost a sixth of a status read, the endpoint that clients
poll in a loop (docs/benchmarks.md).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Flask, Response, request
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp.shared_counters import SharedMemoryStorage

log = logging.getLogger(__name__)


def client_ip() -> str:
    """Who a limit counts: the client's IPv4 address, or its IPv6 /64 network.

    One IPv6 host commonly holds a whole /64 and can pick a new address per request, so
    its addresses count together. (`X-Forwarded-For` counts only through configured proxies.)
    """
    address = request.remote_addr or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


SUBJECT_KEY = "darkroom.limit_subject"
"""Where `webapp.auth` notes the signed-in user of a request: limits then count per user."""


def limit_subject() -> str:
    """Whom a limit counts: the authenticated user (accounts on), else the client's address."""
    return str(request.environ.get(SUBJECT_KEY) or client_ip())


F = TypeVar("F", bound=Callable[..., Any])
_RULE = "_darkroom_rate_limit"


def limited(config_key: str, scope: str) -> Callable[[F], F]:
    """Declare a view limited per client by the setting `config_key`, counted in `scope`.

    Views naming the same scope draw on one bucket per client: creating a job from the API,
    the browser form or "Vary seed" is one `create` scope. The API's views declare it through
    `webapp.api.openapi.rate_limited`, which also documents the 429. The rule travels with
    the function, so renaming a view or its class cannot lose it.
    """

    def mark(fn: F) -> F:
        setattr(fn, _RULE, (config_key, scope))
        return fn

    return mark


def view_method(view: Any, method: str) -> Any:
    """The function that answers `method` on a view: a class view's method (its `get` for
    HEAD unless it has a `head`), or the view function itself. Decorators such as `limited`
    and `security.takes_json_body` leave their marks there."""
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    name = method.lower()
    if name == "head" and not hasattr(view_class, "head"):
        name = "get"
    return getattr(view_class, name, None)


def declared_limits(app: Flask) -> dict[tuple[str, str], tuple[str, str]]:
    """(endpoint, method) → (config key, scope) for every view marked with `limited`."""
    found = {}
    for endpoint, view in app.view_functions.items():
        for rule in app.url_map.iter_rules(endpoint):
            for method in (rule.methods or set()) - {"OPTIONS"}:
                declared = getattr(view_method(view, method), _RULE, None)
                if declared is not None:
                    found[(endpoint, method)] = declared
    return found


_STATE_KEY = "darkroom.rate_limit"


class RateLimited(TooManyRequests):
    """Over a limit: 429 with `Retry-After` (the error handlers give it the usual shape)."""


class RateLimits:
    """Fixed-window limits per client on the views marked `limited`, counted in `storage`."""

    def __init__(
        self,
        storage: Storage,
        limits: dict[tuple[str, str], tuple[RateLimitItem, str]],
        prefix: str,
    ):
        self.storage = storage
        self.limits = limits
        self.prefix = prefix
        self._quiet_until = 0.0

    def check(self) -> None:
        """Count this request against its endpoint's limit; raise `RateLimited` past it."""
        rule = self.limits.get((request.endpoint or "", request.method))
        if rule is None:
            return
        item, scope = rule
        key = item.key_for(self.prefix, scope, limit_subject())
        try:
            count, reset = self._hit(key, item)
        except self.storage.base_exceptions:
            # A broken counter store must not take the service down with it; say so once a
            # minute, not on every request.
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + 60
                log.warning(
                    "rate-limit storage failed; requests go through unlimited", exc_info=True
                )
            return
        # On the request, not on `g`, which requests share when an app context is already
        # pushed (tests, CLI).
        request.environ[_STATE_KEY] = (item, count, reset)
        if count > item.amount:
            raise RateLimited(description=f"Rate limit exceeded: {item}")

    def _hit(self, key: str, item: RateLimitItem) -> tuple[int, float]:
        """Count the hit; the count and when the window ends."""
        storage = self.storage
        if isinstance(storage, SharedMemoryStorage):
            return storage.hit(key, item.get_expiry())
        return storage.incr(key, item.get_expiry()), storage.get_expiry(key)

    @staticmethod
    def headers(response: Response) -> Response:
        """The `X-RateLimit-*` headers of a limited endpoint's answer (429 included)."""
        state = request.environ.get(_STATE_KEY)
        if state is not None:
            item, count, reset = state
            response.headers["X-RateLimit-Limit"] = str(item.amount)
            response.headers["X-RateLimit-Remaining"] = str(max(0, item.amount - count))
            response.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
            if count > item.amount:
                response.headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
        return response


def register_rate_limits(app: Flask) -> None:
    """Bind the views' declared limits to shared storage and check them before each request.

    Called after every blueprint is registered: the limits are read off the views.
    """
    config = app.config
    proxies = int(config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]
    uri = config.get("REDIS_URL") or f"darkroom+shm://{Path(app.instance_path) / 'ratelimit.shm'}"
    limits = {
        route: (parse(str(config[key])), scope)
        for route, (key, scope) in declared_limits(app).items()
    }
    # A synchronous storage: the URI schemes used here are never the `async+` ones.
    storage = cast(Storage, storage_from_string(uri))
    rate_limits = RateLimits(storage, limits, "darkroom")
    app.extensions["darkroom_rate_limits"] = rate_limits
    app.before_request(rate_limits.check)
    app.after_request(rate_limits.headers)
