"""Backends: the servers a self-hosted provider (AUTOMATIC1111/Forge, ComfyUI) spreads its
jobs over.

Each provider reads its servers from one setting (`DARKROOM_A1111_URLS`,
`DARKROOM_COMFYUI_URLS`: comma-separated base URLs, each optionally with `user:password@`).
What is known of each server is kept in the `backends` table, shared by the web and worker
processes: whether it answers, the models it offers (read by the provider's `probe`), and,
for one that stopped answering, until when it is left alone. The worker probes every
backend each minute (a process that finds one never probed probes it at once); a job that
finds its backend not answering marks it down at once (`BackendDown`), and the job is
retried on another one.

A job goes to the healthy backend that offers its model and has the fewest of our jobs
running on it. A down backend is tried again after a back-off that doubles with each
failure in a row (from `BACKEND_RETRY_SECONDS`, at most ten times that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from webapp.config import server_urls
from webapp.database import write_transaction
from webapp.extensions import db
from webapp.models import BackendState, Job, JobStatus, now_utc
from webapp.providers.base import TransientProviderError

log = logging.getLogger(__name__)

SETTINGS = {"a1111": "A1111_URLS", "comfyui": "COMFYUI_URLS"}
"""The setting that lists each self-hosted provider's servers."""
LABELS = {"a1111": "AUTOMATIC1111", "comfyui": "ComfyUI"}
STATE_CACHE_SECONDS = 2.0  # how long a process trusts what it read of the table
MAX_ERROR = 300


@dataclass(frozen=True)
class Backend:
    """One server of a provider, as configured."""

    provider: str
    url: str  # scheme, host, port and path, without credentials or a trailing slash
    auth: tuple[str, str] | None = None  # `user:password@` of the setting (A1111 --api-auth)

    @property
    def key(self) -> str:
        """Its row's key in the `backends` table."""
        return f"{self.provider} {self.url}"

    @property
    def name(self) -> str:
        """Host and port, as pages and logs show it."""
        return urlsplit(self.url).netloc


@dataclass(frozen=True)
class Probed:
    """What a provider's `probe` read of a backend: its models (dicts with at least
    `name`) and anything else the provider needs later (samplers, object info...)."""

    models: list[dict[str, Any]]
    info: dict[str, Any]


class BackendDown(TransientProviderError):
    """A backend stopped answering (refused, timed out, or answered as a dead proxy does).

    The job's attempt moves to another backend, and this one is left alone for a while.
    """

    def __init__(self, backend: Backend, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.backend = backend


def configured(provider: str) -> list[Backend]:
    """The provider's backends from the current app's setting (checked at start)."""
    value = str(current_app.config.get(SETTINGS[provider]) or "")
    return [Backend(provider, url, auth) for url, auth in server_urls(value)]


# -- what is known of them ---------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A backend's row, read once and kept for `STATE_CACHE_SECONDS`."""

    backend: Backend
    up: bool
    failures: int
    down_until: datetime | None
    last_error: str | None
    models: list[dict[str, Any]]
    info: dict[str, Any]
    checked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        """Up, or down but its back-off is over (it is tried again)."""
        return self.up or (self.down_until is not None and self.down_until <= now)

    def offers(self, model_name: str) -> bool:
        return any(m.get("name") == model_name for m in self.models)


def states(provider: str, *, fresh: bool = False) -> list[State]:
    """What is known of each configured backend of a provider (unknown ones as never
    checked), cached per process and app for a moment unless `fresh`."""
    cache: dict[str, tuple[float, list[State]]] = current_app.extensions.setdefault(
        "darkroom.backends", {}
    )
    cached = cache.get(provider)
    if cached is not None and not fresh and cached[0] > time.monotonic():
        return cached[1]
    backends = configured(provider)
    rows = {
        row.key: row
        for row in db.session.scalars(
            select(BackendState).where(BackendState.key.in_([b.key for b in backends]))
        )
    }
    db.session.rollback()
    found = []
    for backend in backends:
        row = rows.get(backend.key)
        found.append(
            State(backend, True, 0, None, None, [], {}, None)
            if row is None
            else State(
                backend,
                row.up,
                row.failures,
                row.down_until,
                row.last_error,
                list(row.models or []),
                dict(row.info or {}),
                row.checked_at,
            )
        )
    cache[provider] = (time.monotonic() + STATE_CACHE_SECONDS, found)
    return found


def _forget_cached(provider: str) -> None:
    current_app.extensions.get("darkroom.backends", {}).pop(provider, None)


def _row(backend: Backend) -> BackendState:
    row = db.session.get(BackendState, backend.key)
    if row is None:
        row = BackendState(
            key=backend.key,
            provider=backend.provider,
            url=backend.url,
            up=True,
            failures=0,
            models=[],
            info={},
            checked_at=now_utc(),
        )
        db.session.add(row)
    return row


def record_up(backend: Backend, probed: Probed) -> None:
    """The backend answered its probe: up, with the models it offers."""
    with write_transaction():
        row = _row(backend)
        if not row.up:
            log.info("backend %s (%s) is up again", backend.name, backend.provider)
        row.up, row.failures, row.down_until, row.last_error = True, 0, None, None
        row.models, row.info, row.checked_at = probed.models, probed.info, now_utc()
    _forget_cached(backend.provider)


def record_down(backend: Backend, error: str) -> datetime:
    """The backend did not answer: down, left alone until the back-off is over (returned)."""
    base = float(current_app.config["BACKEND_RETRY_SECONDS"])
    now = now_utc()
    with write_transaction():
        row = _row(backend)
        row.failures = (row.failures or 0) + 1
        wait = min(base * 10, base * 2 ** (row.failures - 1))
        if row.up:
            log.warning("backend %s (%s) is down: %s", backend.name, backend.provider, error)
        row.up, row.down_until = False, now + timedelta(seconds=wait)
        row.last_error, row.checked_at = error[:MAX_ERROR], now
        until = row.down_until
    _forget_cached(backend.provider)
    return until


def running_counts(provider: str, besides: str | None = None) -> dict[str, int]:
    """How many of our jobs run on each backend of the provider now, by backend key (the
    job `besides`, which is choosing, not counted: it still names its last backend)."""
    rows = db.session.execute(
        select(Job.backend, func.count())
        .where(
            Job.status == JobStatus.PROCESSING,
            Job.backend.like(f"{provider} %"),
            Job.id != (besides or ""),
        )
        .group_by(Job.backend)
    ).all()
    db.session.rollback()
    return {str(key): int(count) for key, count in rows}


def choose(
    provider: str, model_name: str, *, job_id: str | None = None, resume_on: str | None = None
) -> Backend | None:
    """The usable backend that offers the model and runs the fewest of our jobs (the one
    that is up first on a tie, then the order of the setting), or None.

    A job whose earlier attempt left work on a backend (`resume_on`, its key) goes back to
    it while it is usable: the provider finds its run there instead of starting another.
    """
    now = now_utc()
    candidates = [s for s in states(provider, fresh=True) if s.usable(now) and s.offers(model_name)]
    if not candidates:
        return None
    for state in candidates:
        if state.backend.key == resume_on:
            return state.backend
    busy = running_counts(provider, besides=job_id)
    best = min(
        enumerate(candidates),
        key=lambda pair: (busy.get(pair[1].backend.key, 0), not pair[1].up, pair[0]),
    )
    return best[1].backend


def others_usable(backend: Backend, model_name: str) -> bool:
    """Whether another backend could take a job of this model now."""
    now = now_utc()
    return any(
        s.backend != backend and s.usable(now) and s.offers(model_name)
        for s in states(backend.provider, fresh=True)
    )


def probe_all(provider: str, probe: Callable[[Backend], Probed]) -> dict[str, bool]:
    """Probe every configured backend of a provider and record what was found; whether each
    answered, by name. A down backend within its back-off is left alone."""
    now = now_utc()
    answered = {}
    for state in states(provider, fresh=True):
        backend = state.backend
        if not state.usable(now):
            answered[backend.name] = False
            continue
        try:
            probed = probe(backend)
        except Exception as exc:  # any failure to answer is the backend's being down
            record_down(backend, _describe(exc))
            answered[backend.name] = False
        else:
            record_up(backend, probed)
            answered[backend.name] = True
    return answered


def _describe(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:MAX_ERROR]


def offered_models(provider: str, probe: Callable[[Backend], Probed]) -> dict[str, dict[str, Any]]:
    """The models of the provider's healthy backends, by name (the first backend's
    description of each). Backends never probed by anyone are probed first, here."""
    found = states(provider)
    if any(state.checked_at is None for state in found):
        probe_all(provider, probe)
        found = states(provider)
    models: dict[str, dict[str, Any]] = {}
    for state in found:
        if state.up:
            for model in state.models:
                models.setdefault(str(model["name"]), model)
    return models


def by_key(key: str | None) -> Backend | None:
    """The configured backend a job's `backend` column names (with its credentials)."""
    provider = (key or "").partition(" ")[0]
    if provider not in SETTINGS:
        return None
    return next((b for b in configured(provider) if b.key == key), None)


def down() -> list[str]:
    """A line for each configured backend that does not answer, for the model menu."""
    return [
        f"{LABELS[provider]} server {state.backend.name} does not answer"
        for provider in SETTINGS
        for state in states(provider)
        if not state.up
    ]


def health() -> list[dict[str, Any]]:
    """Every configured backend for `/health`: provider, address, up or down, models."""
    found = []
    for provider in SETTINGS:
        for state in states(provider):
            found.append(
                {
                    "provider": provider,
                    "url": state.backend.url,
                    "status": "up" if state.up else "down",
                    "models": len(state.models),
                    "last_error": None if state.up else state.last_error,
                    "retry_at": None if state.up else state.down_until,
                    "checked_at": state.checked_at,
                }
            )
    return found
