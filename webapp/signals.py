"""Signals of the job core, so the modules that react to a job need not import its writers."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

job_finished = _signals.signal("job-finished")
"""Sent with `job_id` after a job reached completed, failed or cancelled (after the commit).

Webhook delivery connects here (`webapp.webhooks.register_webhooks`).
"""
