"""Webhook delivery against real receivers on 127.0.0.1.

Deliveries run in this process exactly as the consumer runs them (`run_tasks` dequeues
every message and calls its task, honouring scheduled times), go over real sockets to a
real HTTP server, and are verified with the independent `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import submit
from tests.procs import running_stack
from tests.webhook_receiver import HUGE, Received, Receiver, Reply, Unanswered
from webapp import __version__, attempts, create_app, jobs, tasks, webhooks
from webapp.delivery import DeliveryPool, destination, later, start_pool, stop_pool
from webapp.extensions import db, huey
from webapp.models import Job, WebhookAttempt, WebhookEvent, now_utc

API = "/api/v1"
SMALL = {"width": 128, "height": 128, "num_inference_steps": 1}
SECRET = "whsec_" + base64.b64encode(b"darkroom webhook test secret 32B").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody else's secret, 32 bytes").decode()


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Receivers live on 127.0.0.1; timeouts and retry delays are short."""
    return {
        **app_config,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "WEBHOOK_RETRY_DELAYS": "0.05,0.05",
        "WEBHOOK_CONNECT_TIMEOUT": 0.5,
        "WEBHOOK_TIMEOUT": 1.0,
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as hook:
        yield hook


# -- helpers ------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # the queue's clock (utc=True, naive)


def run_tasks(wait: float = 5.0) -> list[tuple[str, str]]:
    """Run every queued task in this process, as the consumer would.

    A message scheduled for later is run when its time comes, if that is within `wait`
    seconds; messages due later than that go back to the queue. Returns what ran.
    """
    known = {
        "run_job": tasks.run_job,
        "deliver_webhook": tasks.deliver_webhook,
        "cancel_upstream": tasks.cancel_upstream,
    }
    deadline = time.monotonic() + wait
    ran: list[tuple[str, str]] = []
    later: list[Any] = []
    while True:
        task = huey.dequeue()
        if task is None:
            if not later:
                break
            later.sort(key=lambda t: t.eta)
            pause = (later[0].eta - _utcnow()).total_seconds()
            if time.monotonic() + pause > deadline:
                break
            time.sleep(max(0.0, pause))
            task = later.pop(0)
        elif not huey.ready_to_run(task):
            later.append(task)
            continue
        name = task.name.rsplit(".", 1)[-1]
        known[name].call_local(*task.args)
        ran.append((name, task.args[0]))
    for task in later:
        huey.enqueue(task)
    return ran


def queued(name: str) -> list[Any]:
    """Messages of one task waiting in the queue (scheduled ones included)."""
    return [t for t in huey.pending() if t.name.endswith(name)]


def finished(client: FlaskClient, url: str, **body: Any) -> str:
    """Submit a small job with a webhook, run it and its deliveries; return its id."""
    job_id = submit(client, parameters=SMALL, webhook_url=url, **body)["id"]
    run_tasks()
    return job_id


def fresh_reads() -> None:
    """Forget what this session loaded, as a new request's session would not know it.

    The test client's requests share the test's session, and a delivery updates its event
    with a bulk UPDATE, which leaves an event object still in memory as it was.
    """
    db.session.commit()  # also ends the read snapshot
    db.session.expire_all()


def job_status(client: FlaskClient, job_id: str) -> dict[str, Any]:
    fresh_reads()
    response = client.get(f"{API}/jobs/status/{job_id}")
    assert response.status_code == 200
    return dict(response.get_json())


def listing(client: FlaskClient, job_id: str) -> dict[str, Any]:
    fresh_reads()
    response = client.get(f"{API}/jobs/{job_id}/webhooks")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def delivery(client: FlaskClient, job_id: str) -> dict[str, Any]:
    [only] = listing(client, job_id)["deliveries"]
    return only


def event(job_id: str) -> WebhookEvent:
    fresh_reads()
    row = db.session.get(WebhookEvent, webhooks.event_id_for(job_id))
    assert row is not None
    return row


def verify(request: Received, secret: str = SECRET) -> Any:
    return Webhook(secret).verify(request.body, request.header_map)


# -- payloads -----------------------------------------------------------------------------


def test_completed_job_sends_the_guides_success_payload(
    client: FlaskClient, receiver: Receiver
) -> None:
    job_id = finished(client, receiver.url("/webhooks/media-complete"))
    [request] = receiver.wait_for(1)
    status = job_status(client, job_id)
    [media] = status["media"]

    assert request.method == "POST" and request.path == "/webhooks/media-complete"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Content-Length") == str(len(request.body))
    agent = request.header("User-Agent") or ""
    assert "Darkroom" in agent and __version__ in agent
    body = json.loads(request.body.decode("utf-8"))
    assert list(body) == ["job_id", "status", "media_url", "media_id"]  # the guide's order
    assert body == {
        "job_id": job_id,
        "status": "completed",
        "media_url": f"http://darkroom.test{API}/media/{media['id']}",
        "media_id": media["id"],
    }
    assert body["media_url"] == media["url"]
    download = client.get(urlsplit(body["media_url"]).path)
    assert download.status_code == 200 and download.mimetype == "image/png"
    assert verify(request) == body


def wait_until_claimed(job_id: str, timeout: float = 2.0) -> attempts.Claim:
    deadline = time.monotonic() + timeout
    while (claim := attempts.claim_job(job_id)) is None:
        assert time.monotonic() < deadline, "the job never became due"
        time.sleep(0.01)
    return claim


def test_failed_job_sends_the_guides_failure_payload(
    client: FlaskClient, receiver: Receiver
) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    # The provider fails every attempt: three retries, then the job fails for good.
    outcomes = [
        attempts.fail_attempt(
            wait_until_claimed(job_id), "Replicate API error: Model not found", transient=True
        )
        for _ in range(4)
    ]
    assert outcomes == ["retrying", "retrying", "retrying", "failed"]
    run_tasks()  # the leftover run_job messages find the job ended; the delivery runs
    [request] = receiver.wait_for(1)
    body = verify(request)
    assert list(body) == ["job_id", "status", "error", "error_details"]
    assert body == {
        "job_id": job_id,
        "status": "failed",
        "error": "Replicate API error: Model not found",
        "error_details": {"retry_count": 3, "max_retries": 3},
    }
    assert event(job_id).event_type == "job.failed"


def test_failure_payload_is_utf8_json(client: FlaskClient, receiver: Receiver) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    db.session.get(Job, job_id).model = "modèle-✗"  # the worker cannot find this model
    db.session.commit()
    run_tasks()
    [request] = receiver.wait_for(1)
    assert "modèle-✗".encode() in request.body  # raw UTF-8, not \\u escapes
    body = json.loads(request.body.decode("utf-8"))
    assert body == {
        "job_id": job_id,
        "status": "failed",
        "error": "Model modèle-✗ is not available",
        "error_details": {"retry_count": 0, "max_retries": 3},
    }
    assert verify(request) == body


def test_cancelled_job_sends_a_cancelled_event(client: FlaskClient, receiver: Receiver) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    assert client.delete(f"{API}/jobs/{job_id}").status_code == 204
    ran = run_tasks()
    assert ("deliver_webhook", webhooks.event_id_for(job_id)) in ran
    [request] = receiver.wait_for(1)
    assert verify(request) == {"job_id": job_id, "status": "cancelled"}
    assert list(json.loads(request.body)) == ["job_id", "status"]
    assert event(job_id).event_type == "job.cancelled"


def test_a_job_without_a_webhook_sends_nothing(client: FlaskClient, receiver: Receiver) -> None:
    job_id = submit(client, parameters=SMALL)["id"]
    ran = run_tasks()
    assert [name for name, _ in ran] == ["run_job"]
    assert listing(client, job_id) == {"job_id": job_id, "webhook_url": None, "deliveries": []}


# -- signatures ---------------------------------------------------------------------------


def test_the_signature_is_standard_webhooks(client: FlaskClient, receiver: Receiver) -> None:
    job_id = finished(client, receiver.url())
    [request] = receiver.wait_for(1)
    headers = request.header_map
    msg_id, stamp, signature = (
        headers["webhook-id"],
        headers["webhook-timestamp"],
        headers["webhook-signature"],
    )
    assert msg_id == webhooks.event_id_for(job_id) and msg_id.startswith("msg_")
    assert abs(int(stamp) - request.arrived) <= 2
    # Computed here from the specification, not with the code under test.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + request.body, hashlib.sha256)
    assert signature == "v1," + base64.b64encode(digest.digest()).decode()
    assert verify(request) == json.loads(request.body)


def test_tampering_fails_verification(client: FlaskClient, receiver: Receiver) -> None:
    finished(client, receiver.url())
    [request] = receiver.wait_for(1)
    verify(request)  # the untouched delivery passes
    body, headers = request.body, request.header_map
    position = body.index(b"completed")
    changed = body[:position] + b"C" + body[position + 1 :]
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(changed, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, {**headers, "webhook-id": headers["webhook-id"] + "x"})
    old = str(int(headers["webhook-timestamp"]) - 600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(body, {**headers, "webhook-timestamp": old})


def test_an_old_signature_fails_and_a_fresh_one_passes(
    client: FlaskClient, receiver: Receiver
) -> None:
    job_id = finished(client, receiver.url())
    row = event(job_id)
    stale = webhooks.signed_headers(row, timestamp=int(time.time()) - 600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(row.body, stale)
    fresh = webhooks.signed_headers(row)
    assert Webhook(SECRET).verify(row.body, fresh) == json.loads(row.body)


def test_the_secret_is_generated_once_into_the_instance_folder(
    app: Flask, client: FlaskClient, receiver: Receiver, app_config: dict[str, Any]
) -> None:
    app.config["WEBHOOK_SECRET"] = ""  # as if DARKROOM_WEBHOOK_SECRET were unset
    path = Path(app.instance_path) / "webhook_secret"
    assert not path.exists()
    job_id = finished(client, receiver.url())
    secret = path.read_text().strip()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [first] = receiver.wait_for(1)
    verify(first, secret)
    with pytest.raises(WebhookVerificationError):
        verify(first, SECRET)
    # Kept: a later delivery, and another process on the same folder, use the same one.
    client.post(f"{API}/jobs/{job_id}/webhooks/redeliver")
    run_tasks()
    verify(receiver.wait_for(2)[1], secret)
    other = create_app({**app_config, "WEBHOOK_SECRET": ""})
    with other.app_context():
        assert webhooks.webhook_secret() == secret
        db.session.remove()
        db.engine.dispose()


def test_concurrent_first_uses_agree_on_one_secret(tmp_path: Path) -> None:
    results: list[str] = []
    for attempt in range(20):
        folder = tmp_path / f"instance-{attempt}"
        folder.mkdir()
        instance = Flask(__name__, instance_path=str(folder))
        instance.config["WEBHOOK_SECRET"] = ""
        barrier = threading.Barrier(8)
        seen: list[str] = []

        def first_use(
            instance: Flask = instance, seen: list[str] = seen, barrier: Any = barrier
        ) -> None:
            with instance.app_context():
                barrier.wait()
                seen.append(webhooks.webhook_secret())

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert len(seen) == 8
        assert len(set(seen)) == 1 and seen[0].startswith("whsec_"), seen
        results.append(seen[0])
        assert [p.name for p in folder.iterdir()] == ["webhook_secret"]  # no drafts left
    assert len(set(results)) == 20  # each folder got its own


def test_the_secret_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_config: dict[str, Any]
) -> None:
    monkeypatch.setenv("DARKROOM_WEBHOOK_SECRET", OTHER_SECRET)
    config = {k: v for k, v in app_config.items() if k != "WEBHOOK_SECRET"}
    env_app = create_app(config)
    with env_app.app_context():
        assert webhooks.webhook_secret() == OTHER_SECRET
        assert not (Path(env_app.instance_path) / "webhook_secret").exists()
        db.session.remove()
        db.engine.dispose()


# -- delivery: its own task, timeouts, redirects, answer size -----------------------------


def test_delivery_never_blocks_the_generation(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    app.config["WEBHOOK_TIMEOUT"] = 5.0
    receiver.reply(Reply(hang=True))
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    [message] = queued("run_job")
    huey.dequeue()
    started = time.monotonic()
    tasks.run_job.call_local(*message.args)
    assert time.monotonic() - started < 4.0  # less than the webhook timeout
    assert job_status(client, job_id)["status"] == "completed"
    assert [t.args[0] for t in queued("deliver_webhook")] == [webhooks.event_id_for(job_id)]
    assert receiver.requests == []  # the job ended before anything was sent


def test_a_hanging_receiver_is_cut_off_at_the_timeout(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    app.config["WEBHOOK_RETRY_DELAYS"] = "0.1"
    receiver.reply(Reply(hang=True))
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    started = time.monotonic()
    run_tasks(wait=0)  # the job, and the first attempt, which hangs
    assert 0.9 <= time.monotonic() - started < 3.0  # WEBHOOK_TIMEOUT is 1 s
    first = delivery(client, job_id)
    assert first["status"] == "retrying"
    [attempt] = first["attempts"]
    assert attempt["error"] == "timed out" and attempt["status_code"] is None
    assert len(receiver.requests) == 1
    run_tasks()  # the retry gets an answer
    assert delivery(client, job_id)["status"] == "delivered"
    assert len(receiver.requests) == 2


def test_the_connect_timeout_is_configurable(app: Flask, client: FlaskClient) -> None:
    app.config["WEBHOOK_CONNECT_TIMEOUT"] = 0.3
    app.config["WEBHOOK_TIMEOUT"] = 5.0
    with Unanswered() as port:
        job_id = submit(client, parameters=SMALL, webhook_url=f"http://127.0.0.1:{port}/")["id"]
        started = time.monotonic()
        run_tasks(wait=0)
        assert time.monotonic() - started < 3.0  # the connect timeout, not the total one
    [attempt] = delivery(client, job_id)["attempts"]
    assert attempt["error"] == "timed out"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(client: FlaskClient, receiver: Receiver, code: int) -> None:
    with Receiver() as elsewhere:
        receiver.reply(Reply.redirect(elsewhere.url("/stolen"), code))
        job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
        run_tasks(wait=0)
        assert elsewhere.connections == 0
    record = delivery(client, job_id)
    assert record["status"] == "retrying"  # a redirect is not a delivery
    assert record["attempts"][0]["status_code"] == code
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("reply", "letter"),
    [(Reply(size=HUGE), "a"), (Reply(endless=True), "x")],
    ids=["50MB", "endless"],
)
def test_a_huge_answer_is_not_read_whole(
    client: FlaskClient, receiver: Receiver, reply: Reply, letter: str
) -> None:
    receiver.reply(reply)
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    started = time.monotonic()
    run_tasks()
    assert time.monotonic() - started < 3.0
    record = delivery(client, job_id)
    assert record["status"] == "delivered"
    excerpt = record["attempts"][0]["response_excerpt"]
    assert excerpt == letter * 1024
    [served] = receiver.wait_answered(1)
    assert served.cut_off  # we hung up before the answer ended


def test_a_binary_answer_is_stored_as_at_most_1_kib_of_text(
    client: FlaskClient, receiver: Receiver
) -> None:
    receiver.reply(Reply(200, bytes(range(256)) * 16))
    job_id = finished(client, receiver.url())
    excerpt = delivery(client, job_id)["attempts"][0]["response_excerpt"]
    assert excerpt.startswith("\ufffd")  # NUL is not text (PostgreSQL refuses it)
    assert "\x00" not in excerpt
    assert 0 < len(excerpt.encode("utf-8")) <= 1024


# -- the consumer's delivery pool ---------------------------------------------------------


@pytest.fixture
def pool(app: Flask) -> Iterator[DeliveryPool]:
    """The pool the consumer starts, here in this process: two threads, one per host."""
    app.config["WEBHOOK_CONCURRENCY"] = 2
    app.config["WEBHOOK_PER_HOST"] = 1
    yield start_pool(app)
    stop_pool(10)  # also after a failure: later tests deliver inline


def test_with_the_pool_a_delivery_never_holds_the_tasks_thread(
    client: FlaskClient, receiver: Receiver, pool: DeliveryPool
) -> None:
    receiver.reply(Reply(hang=True))
    with Receiver() as other:
        urls = [receiver.url(), receiver.url(), other.url()]
        job_ids = [submit(client, parameters=SMALL, webhook_url=url)["id"] for url in urls]
        for job_id in job_ids:
            tasks.run_job.call_local(job_id)
        huey.flush()  # this test hands the deliveries over itself
        hanging, behind, elsewhere = (webhooks.event_id_for(job_id) for job_id in job_ids)
        started = time.monotonic()
        for event_id in (hanging, behind, elsewhere):
            tasks.deliver_webhook.call_local(event_id)
        assert time.monotonic() - started < 0.5  # none of them waited for its receiver
        other.wait_for(1)  # another host: at once
        assert pool.waiting_ids() == {behind}  # the hanging host's one place is taken
        first, second = receiver.wait_for(2, timeout=5)
        # It went out when the first was cut off at the timeout (1 s), not through the queue.
        assert second.arrived_monotonic - first.arrived_monotonic >= 0.9
        assert stop_pool(5)
    assert [t.args for t in queued("deliver_webhook")] == [(hanging,)]  # the retry
    statuses = [delivery(client, job_id)["status"] for job_id in job_ids]
    assert statuses == ["retrying", "delivered", "delivered"]
    assert [a["error"] for a in delivery(client, job_ids[0])["attempts"]] == ["timed out"]
    run_tasks()  # with the pool stopped, tasks deliver inline again
    assert delivery(client, job_ids[0])["status"] == "delivered"


def test_past_its_wait_list_a_delivery_goes_back_to_the_queue(
    client: FlaskClient, receiver: Receiver, pool: DeliveryPool
) -> None:
    pool.waiting_per_host = 1
    receiver.reply(Reply(hang=True))
    job_ids = [submit(client, parameters=SMALL, webhook_url=receiver.url())["id"] for _ in "abc"]
    for job_id in job_ids:
        tasks.run_job.call_local(job_id)
    huey.flush()
    running, waiting, refused = (webhooks.event_id_for(job_id) for job_id in job_ids)
    tasks.deliver_webhook.call_local(running)
    receiver.wait_for(1)
    tasks.deliver_webhook.call_local(waiting)
    tasks.deliver_webhook.call_local(refused)
    assert pool.waiting_ids() == {waiting}
    [message] = queued("deliver_webhook")
    assert message.args == (refused, 1)  # offered again later, and later each time
    assert timedelta(0) < message.eta - _utcnow() <= timedelta(seconds=0.6)
    # Stopping hands the waiting delivery back to the queue and waits for the running one.
    assert stop_pool(5)
    assert sorted(t.args for t in queued("deliver_webhook")) == sorted(
        [(running,), (waiting,), (refused, 1)]
    )
    assert len(receiver.requests) == 1
    run_tasks()
    assert [delivery(client, job_id)["status"] for job_id in job_ids] == ["delivered"] * 3


def test_a_delivery_that_is_not_due_takes_no_place_in_the_pool(
    client: FlaskClient, receiver: Receiver, pool: DeliveryPool
) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    tasks.run_job.call_local(job_id)
    huey.flush()
    event_id = webhooks.event_id_for(job_id)
    backdate(event_id, next_attempt_at=now_utc() + timedelta(minutes=5))
    tasks.deliver_webhook.call_local(event_id)  # early: dropped, as `deliver` drops it
    assert pool.busy == 0 and queued("deliver_webhook") == []
    assert stop_pool(5) and receiver.requests == []


def test_destinations_are_host_and_port() -> None:
    assert destination("http://Example.COM/hook") == "example.com:80"
    assert destination("https://example.com/hook") == "example.com:443"
    assert destination("https://example.com:8443/a?b") == "example.com:8443"
    assert destination("http://[::1]:9000/hook") == "::1:9000"


def test_refused_deliveries_wait_longer_each_time_up_to_the_timeout() -> None:
    for deferred, low, high in [(0, 0.4, 0.6), (1, 0.8, 1.2), (3, 3.2, 4.8), (9, 12, 18)]:
        waits = [later(deferred, timeout=15.0) for _ in range(50)]
        assert all(low <= w <= high for w in waits), (deferred, waits)
        assert len(set(waits)) > 1  # jittered


# -- retries ------------------------------------------------------------------------------


def test_server_errors_are_retried_with_backoff_then_delivered(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    app.config["WEBHOOK_RETRY_DELAYS"] = "0.2,0.4,10"
    receiver.reply(Reply(500, b"boom"), Reply(503, b"busy"))
    job_id = finished(client, receiver.url())
    first, second, third = receiver.wait_for(3)
    assert len(receiver.requests) == 3
    ids = {r.header("webhook-id") for r in (first, second, third)}
    assert ids == {webhooks.event_id_for(job_id)}  # stable across retries
    assert first.body == second.body == third.body
    for request in (first, second, third):
        verify(request)
    # Backoff with jitter of at most 20 %.
    assert 0.16 <= second.arrived_monotonic - first.arrived_monotonic < 1.0
    assert 0.32 <= third.arrived_monotonic - second.arrived_monotonic < 1.5

    record = delivery(client, job_id)
    assert record["status"] == "delivered" and record["attempt_count"] == 3
    assert record["delivered_at"] is not None
    attempts = record["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert [a["response_excerpt"] for a in attempts] == ["boom", "busy", "ok"]
    assert [a["error"] for a in attempts] == [None, None, None]
    assert all(isinstance(a["latency_ms"], float) and a["latency_ms"] > 0 for a in attempts)
    times = [datetime.fromisoformat(a["attempted_at"]) for a in attempts]
    assert times == sorted(times)
    assert queued("deliver_webhook") == []


def test_retry_times_are_jittered(app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    app.config["WEBHOOK_RETRY_DELAYS"] = "10,20"
    receiver.default = Reply(500)
    job_ids = [submit(client, parameters=SMALL, webhook_url=receiver.url())["id"] for _ in range(6)]
    run_tasks(wait=0)
    waits = []
    for job_id in job_ids:
        row = event(job_id)
        assert row.status == "retrying"
        waits.append((row.next_attempt_at - row.attempts[0].attempted_at).total_seconds())
    assert all(8.0 <= w <= 12.0 for w in waits), waits
    assert len({round(w, 3) for w in waits}) > 1, waits
    # Each retry waits in the queue, scheduled for its time.
    scheduled = {t.args[0]: t.eta for t in queued("deliver_webhook")}
    assert set(scheduled) == {webhooks.event_id_for(j) for j in job_ids}
    for job_id in job_ids:
        eta = scheduled[webhooks.event_id_for(job_id)]
        due = event(job_id).next_attempt_at.replace(tzinfo=None)
        assert timedelta(0) <= eta - due < timedelta(seconds=1)


def test_retry_delays_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_config: dict[str, Any]
) -> None:
    config = {k: v for k, v in app_config.items() if k != "WEBHOOK_RETRY_DELAYS"}
    for value, expected in [("1,2.5,30", [1.0, 2.5, 30.0]), ("10", [10.0]), (" 5 , 6 ", [5, 6])]:
        monkeypatch.setenv("DARKROOM_WEBHOOK_RETRY_DELAYS", value)
        env_app = create_app(config)
        with env_app.app_context():
            assert webhooks.retry_delays() == expected
            db.session.remove()
            db.engine.dispose()
    monkeypatch.delenv("DARKROOM_WEBHOOK_RETRY_DELAYS")
    default_app = create_app(config)
    with default_app.app_context():
        assert webhooks.retry_delays() == [10, 60, 300, 1800, 7200, 21600]
        db.session.remove()
        db.engine.dispose()


def test_gone_stops_retrying(client: FlaskClient, receiver: Receiver) -> None:
    receiver.reply(Reply(410, b"unsubscribed"))
    job_id = finished(client, receiver.url())
    time.sleep(0.2)  # longer than any retry delay here
    run_tasks()
    assert len(receiver.requests) == 1
    record = delivery(client, job_id)
    assert record["status"] == "gone"
    assert [a["status_code"] for a in record["attempts"]] == [410]
    assert queued("deliver_webhook") == []


def test_retries_run_out_and_the_delivery_fails(client: FlaskClient, receiver: Receiver) -> None:
    receiver.default = Reply(500, b"down")
    job_id = finished(client, receiver.url())
    requests = receiver.wait_for(3)
    time.sleep(0.2)
    run_tasks()
    assert len(receiver.requests) == 3  # the first attempt and two retries
    assert {r.header("webhook-id") for r in requests} == {webhooks.event_id_for(job_id)}
    record = delivery(client, job_id)
    assert record["status"] == "failed" and record["attempt_count"] == 3
    assert [a["status_code"] for a in record["attempts"]] == [500, 500, 500]
    assert queued("deliver_webhook") == []


def test_a_duplicate_message_does_not_send_twice(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    receiver.default = Reply(delay=0.3)
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    [message] = queued("run_job")
    huey.dequeue()
    tasks.run_job.call_local(*message.args)
    event_id = webhooks.event_id_for(job_id)
    db.session.commit()

    def deliver() -> None:
        with app.app_context():
            tasks.deliver_webhook.call_local(event_id)
            db.session.remove()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    run_tasks()  # the original message, late
    tasks.deliver_webhook.call_local(event_id)  # and one more duplicate
    assert len(receiver.requests) == 1
    record = delivery(client, job_id)
    assert record["status"] == "delivered" and len(record["attempts"]) == 1


# -- the sweep ----------------------------------------------------------------------------


def test_the_sweep_writes_an_event_a_crash_left_unwritten(
    client: FlaskClient, receiver: Receiver
) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    [message] = queued("run_job")
    huey.dequeue()
    tasks.run_job.call_local(*message.args)
    # The process died after the job ended, before its event was written and queued.
    db.session.execute(delete(WebhookEvent))
    db.session.commit()
    huey.flush()
    assert listing(client, job_id)["deliveries"] == []

    counts = webhooks.sweep(tasks.queued_ids("deliver_webhook"))
    assert counts == {"recorded": 1, "requeued": 0}
    assert webhooks.sweep(tasks.queued_ids("deliver_webhook")) == {"recorded": 0, "requeued": 0}
    run_tasks()
    [request] = receiver.wait_for(1)
    assert request.header("webhook-id") == webhooks.event_id_for(job_id)
    assert verify(request)["status"] == "completed"
    assert delivery(client, job_id)["status"] == "delivered"


def backdate(event_id: str, **values: Any) -> None:
    db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values))
    db.session.commit()


def test_the_sweep_requeues_a_lost_delivery(client: FlaskClient, receiver: Receiver) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    event_id = webhooks.event_id_for(job_id)
    [message] = queued("run_job")
    huey.dequeue()
    tasks.run_job.call_local(*message.args)
    # While the message is queued, the sweep leaves the delivery alone.
    backdate(event_id, next_attempt_at=now_utc() - timedelta(minutes=5))
    assert webhooks.sweep(tasks.queued_ids("deliver_webhook"))["requeued"] == 0
    assert len(queued("deliver_webhook")) == 1
    # The queue lost the message: the sweep sends it again.
    huey.flush()
    assert webhooks.sweep(tasks.queued_ids("deliver_webhook"))["requeued"] == 1
    run_tasks()
    [request] = receiver.wait_for(1)
    assert request.header("webhook-id") == event_id
    assert delivery(client, job_id)["status"] == "delivered"


def test_the_sweep_resends_a_delivery_whose_worker_died(
    client: FlaskClient, receiver: Receiver
) -> None:
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    event_id = webhooks.event_id_for(job_id)
    [message] = queued("run_job")
    huey.dequeue()
    tasks.run_job.call_local(*message.args)
    # A worker claimed the delivery and died before recording anything; its message is gone.
    huey.flush()
    assert webhooks._claim(event_id) is not None
    long_ago = now_utc() - timedelta(minutes=5)
    backdate(event_id, next_attempt_at=long_ago, lease_expires_at=long_ago + timedelta(minutes=1))
    counts = webhooks.sweep(tasks.queued_ids("deliver_webhook"))
    assert counts["requeued"] == 1
    run_tasks()
    [request] = receiver.wait_for(1)
    assert request.header("webhook-id") == event_id
    record = delivery(client, job_id)
    assert record["status"] == "delivered"


# -- the API ------------------------------------------------------------------------------


def test_the_delivery_log(client: FlaskClient, receiver: Receiver) -> None:
    receiver.reply(Reply(500, b"first try fails"))
    job_id = finished(client, receiver.url())
    first, second = receiver.wait_for(2)
    answer = listing(client, job_id)
    assert answer["job_id"] == job_id and answer["webhook_url"] == receiver.url()
    [record] = answer["deliveries"]
    assert set(record) == {
        "id",
        "event_type",
        "url",
        "status",
        "attempt_count",
        "created_at",
        "delivered_at",
        "next_attempt_at",
        "payload",
        "attempts",
    }
    assert record["id"] == first.header("webhook-id") == webhooks.event_id_for(job_id)
    assert record["event_type"] == "job.completed"
    assert record["url"] == receiver.url()
    assert record["payload"] == json.loads(first.body) == json.loads(second.body)
    assert record["status"] == "delivered" and record["attempt_count"] == 2
    for attempt in record["attempts"]:
        assert set(attempt) == {
            "attempted_at",
            "status_code",
            "latency_ms",
            "error",
            "response_excerpt",
        }
    assert record["attempts"][0]["response_excerpt"] == "first try fails"
    assert client.get(f"{API}/jobs/no-such-job/webhooks").status_code == 404


def test_redelivery_sends_the_same_event_with_a_fresh_signature(
    client: FlaskClient, receiver: Receiver
) -> None:
    job_id = finished(client, receiver.url())
    [first] = receiver.wait_for(1)
    time.sleep(1.05)  # a new second: a fresh signature must differ
    response = client.post(f"{API}/jobs/{job_id}/webhooks/redeliver")
    assert response.status_code == 202
    answer = response.get_json()
    assert answer["id"] == webhooks.event_id_for(job_id)
    assert answer["status"] == "pending"
    # While that attempt waits, another redelivery would send the event twice: 409.
    again = client.post(f"{API}/jobs/{job_id}/webhooks/redeliver")
    assert again.status_code == 409, again.get_json()
    assert "already waiting or running" in again.get_json()["detail"]
    run_tasks()
    _, again = receiver.wait_for(2)
    assert again.header("webhook-id") == first.header("webhook-id")
    assert again.body == first.body
    assert int(again.header("webhook-timestamp")) > int(first.header("webhook-timestamp"))
    assert again.header("webhook-signature") != first.header("webhook-signature")
    assert verify(again) == verify(first)
    record = delivery(client, job_id)
    assert record["status"] == "delivered" and len(record["attempts"]) == 2


def test_redelivery_after_gone_and_after_failure(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    app.config["WEBHOOK_RETRY_DELAYS"] = ""  # one attempt only
    receiver.reply(Reply(410), Reply(500))
    gone = finished(client, receiver.url())
    failed = finished(client, receiver.url())
    assert delivery(client, gone)["status"] == "gone"
    assert delivery(client, failed)["status"] == "failed"
    for job_id in (gone, failed):
        assert client.post(f"{API}/jobs/{job_id}/webhooks/redeliver").status_code == 202
    run_tasks()
    assert len(receiver.requests) == 4
    assert delivery(client, gone)["status"] == "delivered"
    assert delivery(client, failed)["status"] == "delivered"


def test_redelivery_is_refused_without_a_finished_job_with_a_webhook(
    client: FlaskClient, receiver: Receiver
) -> None:
    assert client.post(f"{API}/jobs/no-such-job/webhooks/redeliver").status_code == 404
    plain = submit(client, parameters=SMALL)["id"]
    waiting = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    for job_id in (plain, waiting):
        response = client.post(f"{API}/jobs/{job_id}/webhooks/redeliver")
        assert response.status_code == 409, response.get_json()
    assert receiver.requests == []


def test_a_job_deleted_while_its_webhook_is_sent_ends_the_delivery_quietly(
    app: Flask, client: FlaskClient, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The job goes while the receiver holds the POST: no crash, no attempt left behind."""
    receiver.reply(Reply(200, delay=1.0))
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    tasks.run_job.call_local(job_id)
    event_id = webhooks.event_id_for(job_id)
    outcome: list[Any] = []

    def deliver() -> None:
        with app.app_context():
            outcome.append(webhooks.deliver(event_id))

    caplog.set_level("INFO", logger="webapp.webhooks")
    sender = threading.Thread(target=deliver)
    sender.start()
    receiver.wait_for(1)
    jobs.delete_job(job_id)
    sender.join(10)
    assert outcome == [None]
    fresh_reads()
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
    assert db.session.get(WebhookEvent, event_id) is None
    assert any("not recorded" in r.getMessage() for r in caplog.records), caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

    # A delivery whose event is already gone when it starts sends nothing at all.
    job_id = submit(client, parameters=SMALL, webhook_url=receiver.url())["id"]
    tasks.run_job.call_local(job_id)
    jobs.delete_job(job_id)
    assert webhooks.deliver(webhooks.event_id_for(job_id)) is None
    assert len(receiver.requests) == 1


# -- where the connection goes ------------------------------------------------------------


def test_localhost_is_reached_at_its_checked_address(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    job_id = finished(client, f"http://localhost:{receiver.port}/hook")
    [request] = receiver.wait_for(1)
    assert request.header("Host") == f"localhost:{receiver.port}"
    assert request.peer[0] == "127.0.0.1"
    assert delivery(client, job_id)["status"] == "delivered"


def test_an_internationalised_host_name_is_sent_in_its_ascii_form(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    # Fullwidth letters: IDNA maps this name to "localhost", as DNS, Host and SNI need it.
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    job_id = finished(
        client,
        f"http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{receiver.port}/hook",
    )
    [request] = receiver.wait_for(1)
    assert request.header("Host") == f"localhost:{receiver.port}"
    assert request.peer[0] == "127.0.0.1"
    assert delivery(client, job_id)["status"] == "delivered"


def test_deliveries_ignore_environment_proxies(
    monkeypatch: pytest.MonkeyPatch, client: FlaskClient, receiver: Receiver
) -> None:
    with Receiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        job_id = finished(client, receiver.url())
        assert proxy.connections == 0
    [request] = receiver.wait_for(1)
    assert request.path == "/hook" and request.peer[0] == "127.0.0.1"
    assert delivery(client, job_id)["status"] == "delivered"


def test_dead_proxy_in_the_environment_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, client: FlaskClient, receiver: Receiver
) -> None:
    with Unanswered() as port:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
        job_id = finished(client, receiver.url())
    assert len(receiver.requests) == 1
    assert delivery(client, job_id)["status"] == "delivered"


# -- HTTPS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    """A private certificate authority, as a company's internal receivers would use."""
    return trustme.CA()


@pytest.fixture
def ca_bundle(authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "private-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


class TLSReceiver(Receiver):
    """A receiver answering HTTPS with a certificate for `name`; records the SNI it got."""

    def __init__(self, authority: trustme.CA, name: str, *replies: Reply) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert(name).configure_cert(context)
        self.server_names: list[str | None] = []
        context.sni_callback = lambda _sock, sni, _ctx: self.server_names.append(sni)
        super().__init__(*replies, tls=context)


def test_https_delivery_is_checked_against_the_urls_name(
    app: Flask, client: FlaskClient, authority: trustme.CA, ca_bundle: str
) -> None:
    app.config["WEBHOOK_CA_BUNDLE"] = ca_bundle
    with TLSReceiver(authority, "localhost") as hook:
        job_id = finished(client, f"https://localhost:{hook.port}/hook")
        [request] = hook.wait_for(1)
        assert hook.server_names == ["localhost"]
    assert request.peer[0] == "127.0.0.1" and request.header("Host") == f"localhost:{hook.port}"
    assert verify(request)["job_id"] == job_id
    assert delivery(client, job_id)["status"] == "delivered"


@pytest.mark.parametrize("trusted, name", [(False, "localhost"), (True, "elsewhere.example")])
def test_https_without_a_trusted_certificate_for_the_name_is_never_delivered(
    app: Flask,
    client: FlaskClient,
    authority: trustme.CA,
    ca_bundle: str,
    trusted: bool,
    name: str,
) -> None:
    """An unknown authority, or a certificate for another name: refused at the handshake."""
    if trusted:
        app.config["WEBHOOK_CA_BUNDLE"] = ca_bundle
    with TLSReceiver(authority, name) as hook:
        job_id = finished(client, f"https://localhost:{hook.port}/hook")
        assert hook.requests == [], "nothing may reach a receiver that failed the check"
        assert hook.server_names, "the handshake was tried"
    record = delivery(client, job_id)
    assert record["status"] == "failed" and record["attempt_count"] == 3
    for attempt in record["attempts"]:
        assert attempt["status_code"] is None
        assert attempt["error"] == "connection failed: SSLError", attempt


def test_public_authorities_stay_trusted_beside_a_private_one(ca_bundle: str) -> None:
    from webapp import netguard

    public = netguard.tls_context("").get_ca_certs()
    both = netguard.tls_context(ca_bundle).get_ca_certs()
    assert len(public) > 50 and len(both) == len(public) + 1


def test_each_thread_keeps_a_tls_context_of_its_own(ca_bundle: str) -> None:
    """urllib3 sets options on a context at each connection: threads must not share one."""
    from webapp import netguard

    mine = netguard.tls_context(ca_bundle)
    assert netguard.tls_context(ca_bundle) is mine, "built once per thread, then reused"
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(netguard.tls_context(ca_bundle)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and len(theirs[0].get_ca_certs()) == len(mine.get_ca_certs())


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_an_unreadable_ca_bundle_stops_the_start(
    app_config: dict[str, Any], tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RuntimeError, match="DARKROOM_WEBHOOK_CA_BUNDLE: cannot read"):
        create_app({**app_config, "WEBHOOK_CA_BUNDLE": str(path)})


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_real_worker_delivers_a_signed_webhook(tmp_path: Path, receiver: Receiver) -> None:
    receiver.reply(Reply(500, b"not yet"))
    env = {
        "DARKROOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "DARKROOM_WEBHOOK_RETRY_DELAYS": "0.5,0.5",
    }
    with running_stack(tmp_path, env=env) as stack:
        job_id = stack.submit("a lighthouse", parameters=SMALL, webhook_url=receiver.url())["id"]
        first, second = receiver.wait_for(2, timeout=30)
        secret = (stack.instance / "webhook_secret").read_text().strip()
        assert secret.startswith("whsec_")
        body = verify(second, secret)
        assert verify(first, secret) == body
        assert first.header("webhook-id") == second.header("webhook-id")
        media_id = stack.status(job_id)["media"][0]["id"]
        assert body == {
            "job_id": job_id,
            "status": "completed",
            "media_url": f"{stack.base_url}{API}/media/{media_id}",
            "media_id": media_id,
        }
        assert stack.get(body["media_url"]).status_code == 200

        def delivered() -> dict[str, Any] | None:
            [record] = stack.get(f"{API}/jobs/{job_id}/webhooks").json()["deliveries"]
            return record if record["status"] == "delivered" else None

        record = stack.wait_until("the delivery to be recorded", delivered, timeout=10)
        assert [a["status_code"] for a in record["attempts"]] == [500, 200]
        assert stat.S_IMODE(os.stat(stack.instance / "webhook_secret").st_mode) == 0o600


@pytest.mark.e2e
def test_the_real_worker_delivers_over_https_with_a_private_authority(
    tmp_path: Path, authority: trustme.CA, ca_bundle: str
) -> None:
    env = {
        "DARKROOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "DARKROOM_WEBHOOK_CA_BUNDLE": ca_bundle,
    }
    with TLSReceiver(authority, "localhost") as hook, running_stack(tmp_path, env=env) as stack:
        url = f"https://localhost:{hook.port}/hook"
        job_id = stack.submit("a harbour at night", parameters=SMALL, webhook_url=url)["id"]
        [request] = hook.wait_for(1, timeout=30)
        assert hook.server_names == ["localhost"]
        secret = (stack.instance / "webhook_secret").read_text().strip()
        assert verify(request, secret)["job_id"] == job_id

        def delivered() -> dict[str, Any] | None:
            [record] = stack.get(f"{API}/jobs/{job_id}/webhooks").json()["deliveries"]
            return record if record["status"] == "delivered" else None

        record = stack.wait_until("the delivery to be recorded", delivered, timeout=10)
        assert [a["status_code"] for a in record["attempts"]] == [200]
