"""Webhooks: one event per finished job, signed per Standard Webhooks, delivered and retried.

An event is written once, with the exact bytes to send and a stable `webhook-id`, then
delivered by its own task. Each attempt is recorded. Deliveries are claimed like jobs (a
guarded UPDATE with a lease), so a duplicate queue message never sends twice at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3
from flask import Flask, current_app
from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.exc import IntegrityError

from webapp import netguard, urls
from webapp.database import rows_changed, write_transaction
from webapp.extensions import db
from webapp.models import (
    CLAIMABLE_DELIVERIES,
    REDELIVERABLE_DELIVERIES,
    TERMINAL_STATUSES,
    DeliveryStatus,
    Job,
    JobStatus,
    WebhookAttempt,
    WebhookEvent,
    now_utc,
)
from webapp.queue import enqueue_delivery
from webapp.signals import job_finished
from webapp.workers import holder_is_dead, holder_token

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
EXCERPT_BYTES = 1024


class DeliveryInProgress(Exception):
    """An attempt of the job's event waits or runs: a redelivery would send it twice."""


class NoWebhook(Exception):
    """The job has no webhook URL or has not finished, so there is nothing to deliver."""


# -- the secret and the signature ---------------------------------------------------------


def webhook_secret() -> str:
    """`DARKROOM_WEBHOOK_SECRET`, else one generated once and kept in the instance folder."""
    configured = current_app.config.get("WEBHOOK_SECRET")
    if configured:
        return str(configured)
    path = Path(current_app.instance_path) / "webhook_secret"
    if not path.exists():
        fresh = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
        # Written whole under a private name, then linked into place: the file appears
        # only with its content (a reader never sees it empty), and only the first link
        # wins when several threads or processes get here together.
        draft = path.with_name(f".webhook_secret.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(fresh)
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1 and the base64 HMAC-SHA256 of "id.timestamp.body"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(event: WebhookEvent, timestamp: int | None = None) -> dict[str, str]:
    """Headers of one delivery: content type, user agent and the three signature headers."""
    from webapp import __version__

    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": f"Darkroom-Webhooks/{__version__}",
        "webhook-id": event.id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(webhook_secret(), event.id, stamp, event.body),
    }


# -- events -------------------------------------------------------------------------------


def payload(job: Job) -> dict[str, Any]:
    """The body the API guide shows for a finished job (and a short one for cancelled)."""
    if job.status == JobStatus.COMPLETED:
        first = job.media[0] if job.media else None
        return {
            "job_id": job.id,
            "status": "completed",
            "media_url": urls.media_url(first.id) if first else None,
            "media_id": first.id if first else None,
        }
    if job.status == JobStatus.FAILED:
        details = job.error_details or {}
        return {
            "job_id": job.id,
            "status": "failed",
            "error": job.error_message,
            "error_details": {
                "retry_count": details.get("retry_count", job.retry_count),
                "max_retries": details.get("max_retries", job.max_retries),
            },
        }
    return {"job_id": job.id, "status": job.status}


def event_id_for(job_id: str) -> str:
    """A job ends once, so its one event has an id derived from the job's."""
    return "msg_" + uuid.uuid5(uuid.NAMESPACE_URL, f"darkroom:job:{job_id}").hex


def record_event(job_id: str) -> WebhookEvent | None:
    """Write the event of a finished job that has a webhook URL (once; later calls find it)."""
    job = db.session.get(Job, job_id, populate_existing=True)
    if job is None or not job.webhook_url or job.status not in TERMINAL_STATUSES:
        return None
    existing = db.session.get(WebhookEvent, event_id_for(job_id))
    if existing is not None:
        return existing
    body = json.dumps(payload(job), separators=(",", ":"), ensure_ascii=False).encode()
    event = WebhookEvent(
        id=event_id_for(job_id),
        job_id=job_id,
        event_type=f"job.{job.status}",
        url=job.webhook_url,
        body=body,
        status=DeliveryStatus.PENDING,
        next_attempt_at=now_utc(),
    )
    try:
        with write_transaction():
            db.session.add(event)
    except IntegrityError:
        return db.session.get(WebhookEvent, event_id_for(job_id))
    return event


def register_webhooks() -> None:
    """Deliver a webhook whenever a job ends (connecting twice is harmless)."""
    job_finished.connect(on_job_finished)


def on_job_finished(_sender: Flask, job_id: str) -> None:
    """Signal receiver: record the job's event and queue its delivery."""
    try:
        event = record_event(job_id)
        if event is not None and event.status in CLAIMABLE_DELIVERIES:
            enqueue_delivery(event.id)
    except Exception:
        # The job already ended; the periodic sweep writes the missing event later.
        log.exception("could not record the webhook event of job %s", job_id)
        db.session.rollback()


def retry_delays() -> list[float]:
    """Seconds to wait before each retry (`DARKROOM_WEBHOOK_RETRY_DELAYS`)."""
    value = current_app.config["WEBHOOK_RETRY_DELAYS"]
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    return [float(v) for v in value]


# -- delivery -----------------------------------------------------------------------------


def _lease_seconds() -> float:
    config = current_app.config
    return 60 + float(config["WEBHOOK_CONNECT_TIMEOUT"]) + float(config["WEBHOOK_TIMEOUT"])


def _due(event_id: str, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The event, if an attempt of it may start now (waiting, and its time has come)."""
    return (
        WebhookEvent.id == event_id,
        WebhookEvent.status.in_(CLAIMABLE_DELIVERIES),
        WebhookEvent.next_attempt_at <= now,
    )


def _claim(event_id: str) -> str | None:
    """Take a due event for one delivery attempt; None if it is not due or someone has it."""
    now = now_utc()
    token = holder_token()
    with write_transaction():
        changed = rows_changed(
            update(WebhookEvent)
            .where(*_due(event_id, now))
            .values(
                status=DeliveryStatus.DELIVERING,
                lease_token=token,
                # Longer than any attempt can take, so the sweep never sends a second copy
                # while the first is still in flight.
                lease_expires_at=now + timedelta(seconds=_lease_seconds()),
                attempt_count=WebhookEvent.attempt_count + 1,
            )
            .execution_options(synchronize_session=False)
        )
    return token if changed == 1 else None


def due_url(event_id: str) -> str | None:
    """The URL of an event whose attempt may start now; None if it is not due, is being
    delivered, has ended or is gone (a message that `deliver` would drop)."""
    return db.session.scalar(select(WebhookEvent.url).where(*_due(event_id, now_utc())))


def _send(event: WebhookEvent) -> tuple[int | None, float | None, str | None, str | None, bool]:
    """One POST. Returns status code, latency, error, answer excerpt, and whether to give up."""
    config = current_app.config
    allowed = netguard.parse_networks(config.get("WEBHOOK_ALLOWED_NETWORKS"))
    try:
        target = netguard.resolve(event.url, allowed)
        answer = netguard.post(
            target,
            event.body,
            signed_headers(event),
            connect_timeout=float(config["WEBHOOK_CONNECT_TIMEOUT"]),
            total_timeout=float(config["WEBHOOK_TIMEOUT"]),
            extra_cas=str(config.get("WEBHOOK_CA_BUNDLE") or ""),
        )
    except netguard.UnsafeURL as exc:
        return None, None, f"refused: {exc}", None, True
    except netguard.UnresolvableURL as exc:
        return None, None, str(exc), None, False
    except urllib3.exceptions.TimeoutError:
        return None, None, "timed out", None, False
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return None, None, f"connection failed: {type(exc).__name__}", None, False
    except Exception as exc:
        # Recorded and retried like any failure, rather than leaving the claim to expire.
        log.exception("webhook %s: unexpected error while sending", event.id)
        return None, None, f"internal error: {type(exc).__name__}", None, False
    # Text only (PostgreSQL cannot store NUL), and at most EXCERPT_BYTES once encoded:
    # each replaced byte of a binary answer takes three.
    excerpt = answer.body[:EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")
    excerpt = excerpt.encode()[:EXCERPT_BYTES].decode("utf-8", "ignore")
    return answer.status, round(answer.latency_ms, 1), None, excerpt, False


def deliver(event_id: str) -> DeliveryStatus | None:
    """Make one delivery attempt, record it, and schedule the next if it failed."""
    token = _claim(event_id)
    if token is None:
        return None
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    if event is None:  # deleted with its job between the claim and this read
        db.session.commit()
        log.info("webhook %s: its job was deleted; nothing sent", event_id)
        return None
    db.session.commit()  # no transaction stays open during the network call
    started_at = now_utc()
    status_code, latency, error, excerpt, give_up = _send(event)
    now = now_utc()
    delays = retry_delays()
    values: dict[str, Any] = {}
    if status_code is not None and 200 <= status_code < 300:
        status, values["delivered_at"] = DeliveryStatus.DELIVERED, now
    elif status_code == 410:
        status = DeliveryStatus.GONE  # the receiver asked us to stop
    elif give_up or event.attempt_count > len(delays):
        status = DeliveryStatus.FAILED
    else:
        status = DeliveryStatus.RETRYING
        delay = delays[event.attempt_count - 1] * random.uniform(0.8, 1.2)
        values["next_attempt_at"] = now + timedelta(seconds=delay)
    with write_transaction():
        # The event is updated first: if its job was deleted during the attempt, there is
        # no row left to update, and no attempt is recorded for an event that is gone.
        recorded = rows_changed(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.lease_token == token)
            .values(status=status, lease_token=None, lease_expires_at=None, **values)
            .execution_options(synchronize_session=False)
        )
        if recorded:
            db.session.add(
                WebhookAttempt(
                    event_id=event_id,
                    attempted_at=started_at,
                    status_code=status_code,
                    latency_ms=latency,
                    error=error,
                    response_excerpt=excerpt,
                )
            )
    attempt = event.attempt_count
    # The UPDATE went past the session: the object it loaded still says "delivering", and
    # a later read in the same session (a task run inside a request, a test) must not see it.
    db.session.expire(event)
    if not recorded:
        log.info(
            "webhook %s attempt %d: not recorded, the event is gone (its job was deleted) or"
            " no longer ours",
            event_id,
            attempt,
        )
        return None
    if status == DeliveryStatus.RETRYING:
        enqueue_delivery(event_id, delay=(values["next_attempt_at"] - now).total_seconds())
    log.info("webhook %s attempt %d: %s", event_id, attempt, status)
    return status


def deliveries(job_id: str) -> list[WebhookEvent]:
    """The job's events with their attempts."""
    return list(
        db.session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.job_id == job_id)
            .order_by(WebhookEvent.created_at)
        )
    )


def redeliver(job_id: str) -> WebhookEvent:
    """Send the job's event again: same `webhook-id` and bytes, a fresh signature."""
    event = record_event(job_id)
    if event is None:
        raise NoWebhook(job_id)
    with write_transaction():
        changed = rows_changed(
            update(WebhookEvent)
            .where(WebhookEvent.id == event.id, WebhookEvent.status.in_(REDELIVERABLE_DELIVERIES))
            .values(status=DeliveryStatus.PENDING, attempt_count=0, next_attempt_at=now_utc())
            .execution_options(synchronize_session=False)
        )
    if not changed:
        raise DeliveryInProgress(job_id)
    enqueue_delivery(event.id)
    fresh = db.session.get(WebhookEvent, event.id, populate_existing=True)
    if fresh is None:  # deleted with its job meanwhile
        raise NoWebhook(job_id)
    return fresh


# -- upkeep ------------------------------------------------------------------------------


def sweep(queued_event_ids: set[str] | None, now: datetime | None = None) -> dict[str, int]:
    """Write events a crash left unwritten; re-queue deliveries whose message was lost."""
    now = now or now_utc()
    counts = {"recorded": 0, "requeued": 0}
    missing = db.session.scalars(
        select(Job.id).where(
            Job.webhook_url.is_not(None),
            Job.status.in_(TERMINAL_STATUSES),
            Job.completed_at >= now - timedelta(days=1),
            ~exists().where(WebhookEvent.job_id == Job.id),
        )
    ).all()
    for job_id in missing:
        event = record_event(job_id)
        if event is not None:
            enqueue_delivery(event.id)
            counts["recorded"] += 1
    # A worker that died mid-delivery leaves its claim behind; try again once its lease ran
    # out, or at once when its process on this host is gone.
    held = db.session.execute(
        select(WebhookEvent.id, WebhookEvent.lease_token, WebhookEvent.lease_expires_at).where(
            WebhookEvent.status == DeliveryStatus.DELIVERING
        )
    ).all()
    lease = timedelta(seconds=_lease_seconds())
    for event_id, token, expires in held:
        claimed_at = expires - lease if expires is not None else None
        if not ((expires is not None and expires <= now) or holder_is_dead(token, claimed_at)):
            continue
        with write_transaction():
            changed = rows_changed(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.lease_token == token)
                # next_attempt_at stays as it was (before the claim, so long past): the
                # re-queue below picks the delivery up in this same sweep.
                .values(status=DeliveryStatus.RETRYING, lease_token=None)
                .execution_options(synchronize_session=False)
            )
        if changed == 1:
            log.info("webhook %s: the claim of a stopped worker was released", event_id)
    stale = now - timedelta(seconds=float(current_app.config["STALE_QUEUE_SECONDS"]))
    due = db.session.scalars(
        select(WebhookEvent.id).where(
            WebhookEvent.status.in_(CLAIMABLE_DELIVERIES), WebhookEvent.next_attempt_at <= stale
        )
    ).all()
    for event_id in due:
        if queued_event_ids is None or event_id not in queued_event_ids:
            enqueue_delivery(event_id)
            counts["requeued"] += 1
    db.session.commit()
    return counts
