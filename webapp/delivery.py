"""The consumer's webhook delivery pool: receivers wait on threads of their own.

The consumer's worker threads run generations. A delivery can wait on its receiver for the
whole `DARKROOM_WEBHOOK_TIMEOUT`, so if deliveries ran on those threads, a few receivers
that never answer would stop every job. Here they run on a fixed set of daemon threads
(`DARKROOM_WEBHOOK_CONCURRENCY`), at most `DARKROOM_WEBHOOK_PER_HOST` of them to one
destination at a time, so one slow receiver holds only its share and the pool as a whole
holds no job thread.

The `deliver_webhook` task only offers the event to the pool and returns. A delivery whose
destination (or the whole pool) is busy waits its turn here, in order, destinations taking
turns; it costs no thread and no queue traffic while it waits. Past `WAITING_PER_HOST`
waiting for one destination (or `WAITING_IN_ALL` in all) the pool refuses, and the task
puts the message back in the queue for a little later (`later`).

The event row stays the record. A thread claims the event as before (`webhooks.deliver`),
so a consumer killed mid-delivery leaves a claim that the next consumer's sweep releases
and sends again; a delivery that was only waiting here is due and in no queue, so the sweep
queues it again too (`webhooks.sweep`, at start-up and every minute). A graceful stop puts
the waiting ones back in the queue and lets those in flight end, which their timeout bounds.

Only the consumer starts a pool (as it starts). Elsewhere, as in tests that run tasks in
their own process, `deliver_webhook` delivers inline as it always did.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from urllib.parse import urlsplit

from flask import Flask

from webapp import webhooks
from webapp.extensions import db
from webapp.queue import enqueue_delivery

log = logging.getLogger(__name__)

WAITING_PER_HOST = 100  # deliveries waiting here for one destination, beyond those running
WAITING_IN_ALL = 10_000  # a bound on this process's memory whatever the destinations
FIRST_DEFERRAL = 0.5  # seconds before a refused delivery is offered again, doubling each time


def destination(url: str) -> str:
    """What the per-host cap counts: the URL's host name and port.

    A port is a server of its own (urllib3 and browsers count connections the same way);
    the name is the one in the URL, so this needs no DNS lookup before the attempt's own.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # checked at submission; a bad port fails in the attempt itself
        return parts.netloc.lower()
    return f"{(parts.hostname or '').lower()}:{port}"


def later(deferred: int, timeout: float) -> float:
    """Seconds before a refused delivery is offered again: 0.5, 1, 2, … up to one timeout.

    It doubles, so deliveries kept out by receivers that hang stop churning the queue, and
    never exceeds the delivery timeout, by which every attempt now running has ended.
    Jitter spreads a burst of refused deliveries over time.
    """
    delay = min(timeout, FIRST_DEFERRAL * 2 ** min(deferred, 16))
    return delay * random.uniform(0.8, 1.2)


class DeliveryPool:
    """A fixed set of daemon threads that make webhook delivery attempts, capped per host."""

    def __init__(
        self, app: Flask, size: int, per_host: int, waiting_per_host: int = WAITING_PER_HOST
    ) -> None:
        self.app, self.size, self.per_host = app, size, per_host
        self.waiting_per_host = waiting_per_host
        self._changed = threading.Condition()
        # Destination → event ids waiting for it, oldest first; the dict's order is the
        # turn order of destinations.
        self._waiting: dict[str, collections.deque[str]] = {}
        self._waiting_ids: set[str] = set()
        self._running: dict[str, int] = {}  # destination → deliveries running there
        self._busy = 0
        self._stopping = False  # start nothing more (the consumer is stopping)
        self._ended = False  # the threads return
        # Daemon threads: an immediate stop (SIGTERM) must not wait for a receiver; what
        # they had claimed is released by the next consumer's sweep.
        self._threads = [
            threading.Thread(target=self._serve, name=f"webhook-{n + 1}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def busy(self) -> int:
        """Deliveries running now."""
        with self._changed:
            return self._busy

    def waiting_ids(self) -> set[str]:
        """Events waiting here for their turn (not in the queue, yet not lost)."""
        with self._changed:
            return set(self._waiting_ids)

    def offer(self, event_id: str, to: str) -> bool:
        """Take a delivery to destination `to`: it starts as soon as a thread and `to` have
        room. False when it cannot even wait here (stopping, or too many wait already)."""
        with self._changed:
            if self._stopping or self._ended:
                return False
            if event_id in self._waiting_ids:
                return True  # a duplicate message; the claim would refuse it anyway
            waiting = self._waiting.get(to)
            if waiting is not None and len(waiting) >= self.waiting_per_host:
                return False
            if len(self._waiting_ids) >= WAITING_IN_ALL:
                return False
            self._waiting.setdefault(to, collections.deque()).append(event_id)
            self._waiting_ids.add(event_id)
            self._changed.notify_all()
        return True

    def _next(self) -> tuple[str, str] | None:
        """Start the oldest delivery of the first destination in turn that has room."""
        if self._stopping:
            return None
        for to, waiting in self._waiting.items():
            if self._running.get(to, 0) < self.per_host:
                event_id = waiting.popleft()
                del self._waiting[to]
                if waiting:
                    self._waiting[to] = waiting  # to the back: destinations take turns
                self._waiting_ids.discard(event_id)
                self._running[to] = self._running.get(to, 0) + 1
                self._busy += 1
                return event_id, to
        return None

    def _serve(self) -> None:
        while True:
            with self._changed:
                while (picked := self._next()) is None:
                    if self._ended:
                        return
                    self._changed.wait()
            event_id, to = picked
            try:
                with self.app.app_context():
                    try:
                        webhooks.deliver(event_id)
                    finally:
                        db.session.remove()
            except Exception:
                # The claim, if made, runs out with its lease and the sweep sends it again.
                log.exception("webhook %s: the delivery failed unexpectedly", event_id)
            finally:
                with self._changed:
                    self._busy -= 1
                    self._running[to] -= 1
                    if not self._running[to]:
                        del self._running[to]
                    self._changed.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no delivery runs, at most `timeout` seconds; True if none does."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy == 0, timeout)

    def stop(self, timeout: float) -> bool:
        """Start nothing more, put the waiting deliveries back in the queue, and wait for
        those running (as `drain`). `resume` undoes it."""
        with self._changed:
            self._stopping = True
            waiting = [event_id for queued in self._waiting.values() for event_id in queued]
            self._waiting.clear()
            self._waiting_ids.clear()
        for event_id in waiting:
            enqueue_delivery(event_id)
        if waiting:
            log.info("%d waiting webhook deliveries put back in the queue", len(waiting))
        return self.drain(timeout)

    def resume(self) -> None:
        """Take deliveries again after `stop`."""
        with self._changed:
            self._stopping = False
            self._changed.notify_all()

    def end(self) -> None:
        """Let the threads return once idle (after `stop`)."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()


_pool: DeliveryPool | None = None
_pool_lock = threading.Lock()


def start_pool(app: Flask) -> DeliveryPool:
    """Start this process's pool, sized by the app's settings; a later call returns it,
    taking deliveries again if it was stopped."""
    global _pool
    with _pool_lock:
        if _pool is None:
            config = app.config
            _pool = DeliveryPool(
                app, int(config["WEBHOOK_CONCURRENCY"]), int(config["WEBHOOK_PER_HOST"])
            )
        else:
            _pool.resume()
        return _pool


def running_pool() -> DeliveryPool | None:
    """This process's pool, or None where none was started (deliveries then run inline)."""
    return _pool


def stop_pool(timeout: float) -> bool:
    """Stop this process's pool (see `DeliveryPool.stop`) and end its threads; deliveries
    run inline again afterwards. True if nothing was left running."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return True
    idle = pool.stop(timeout)
    pool.end()
    return idle
