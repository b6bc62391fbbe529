"""The one place the domain rings the task queue ("enqueue" is the only verb for it).

The jobs table and the webhook events table are the records; a queue message is only a
doorbell. So a failure to enqueue is logged, not raised: the periodic upkeep
(`webapp.tasks.upkeep`) enqueues again whatever is due and missing from the queue.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _tasks() -> Any:
    """The task module, imported on first use.

    The single lazy import of the job core: `webapp.tasks` imports the domain (jobs,
    attempts, webhooks) to run it, and the domain rings the queue through this module, so
    importing the tasks here at the top would close a circle. Huey's own Flask example
    defers its task import for the same reason.
    """
    from webapp import tasks

    return tasks


def _enqueue(task_name: str, key: str, delay: float, *more: Any) -> None:
    """Queue a task for one id, now or after `delay` seconds; a failure is only logged."""
    task = getattr(_tasks(), task_name)
    try:
        if delay > 0:
            task.schedule(args=(key, *more), delay=delay)
        else:
            task(key, *more)
    except Exception:
        log.exception("could not queue %s for %s; upkeep will queue it again", task_name, key)


def enqueue_job(job_id: str, delay: float = 0) -> None:
    """Queue a run of the job (a worker claims it, or drops a duplicate)."""
    _enqueue("run_job", job_id, delay)


def enqueue_delivery(event_id: str, delay: float = 0, deferred: int = 0) -> None:
    """Queue a delivery attempt of a webhook event.

    `deferred`: how often the delivery pool already turned this attempt away (it waits
    longer each time; see `webapp.delivery.later`).
    """
    if deferred:
        _enqueue("deliver_webhook", event_id, delay, deferred)
    else:
        _enqueue("deliver_webhook", event_id, delay)


def enqueue_upstream_cancel(job_id: str) -> None:
    """Queue the message that tells a cancelled job's provider to stop."""
    _enqueue("cancel_upstream", job_id, 0)
