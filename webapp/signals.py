"""Signals of the job core, so the modules that react to a job need not import its writers."""

from __future__ import annotations

from blinker import Namespace
from flask import Flask, current_app

_signals = Namespace()

job_finished = _signals.signal("job-finished")
"""Sent by the app with `job_id` after a job reached completed, failed or cancelled (after
the commit). Webhook delivery connects here (`webapp.webhooks.register_webhooks`)."""


def this_app() -> Flask:
    """The app behind `current_app` (a sender or a thread needs the object, not the proxy)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def announce_finished(job_id: str) -> None:
    """Send `job_finished` for a job whose end was just committed."""
    job_finished.send(this_app(), job_id=job_id)
