"""The SSRF guard: hostile webhook URLs are refused at submission and again at send.

Every refusal is proven three ways against a real receiver listening on 127.0.0.1: the
API answers 422, `netguard.resolve` raises, and a delivery to an event carrying the URL
records a refused attempt while the receiver sees no connection at all. Loopback forms
carry the receiver's own port, so a guard that let one through would be caught by the
receiver recording the request.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import submit
from tests.webhook_receiver import HUGE, Receiver, Reply, Unanswered
from webapp import jobs, netguard, validation, webhooks
from webapp.extensions import db, huey
from webapp.models import Job, WebhookEvent
from webapp.validation import JobCreate

API = "/api/v1"

# `{p}` is the port of a live receiver on 127.0.0.1: if the guard let a loopback form
# through, the request would land there and the test would see it.
HOSTILE_URLS = [
    # loopback, in every spelling the resolver accepts
    "http://127.0.0.1:{p}/hook",
    "https://127.0.0.1:{p}/hook",
    "http://2130706433:{p}/hook",
    "http://0x7f000001:{p}/hook",
    "http://0177.0.0.1:{p}/hook",
    "http://017700000001:{p}/hook",
    "http://0x7f.1:{p}/hook",
    "http://127.1:{p}/hook",
    "http://0:{p}/hook",
    "http://0.0.0.0:{p}/hook",
    "http://localhost:{p}/hook",
    "http://LocalHost:{p}/hook",
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{p}/hook",  # fullwidth
    "http://[::1]:{p}/hook",
    "http://[::]:{p}/hook",
    "http://[0:0:0:0:0:0:0:1]:{p}/hook",
    # IPv4 hidden in IPv6: mapped, NAT64, 6to4, IPv4-compatible
    "http://[::ffff:127.0.0.1]:{p}/hook",
    "http://[::ffff:7f00:1]:{p}/hook",
    "http://[64:ff9b::7f00:1]:{p}/hook",
    "http://[64:ff9b:1::a00:1]/",
    "http://[2002:7f00:1::]:{p}/hook",
    "http://[::127.0.0.1]:{p}/hook",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    # link-local, cloud metadata, private, shared, site-local, documentation, reserved
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://240.0.0.1/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://[fc00::1]/",
    "http://[fec0::1]/",
    "http://[2001:db8::1]/",
    # multicast and broadcast
    "http://224.0.0.1/",
    "http://239.255.255.250:1900/",
    "http://[ff02::1]/",
    "http://[ff0e::1]/",
    "http://255.255.255.255/",
    # credentials and userinfo tricks
    "http://example.com@127.0.0.1:{p}/hook",
    "http://user:pass@example.com/",
    "http://127.0.0.1:{p}#@example.com/",
    "http://127.0.0.1:{p}\\@example.com/",
    # other schemes
    "file:///etc/passwd",
    "gopher://127.0.0.1:{p}/_POST",
    "ftp://127.0.0.1/",
    "javascript:alert(1)",
    "dict://127.0.0.1:{p}/",
]


def test_the_table_is_long_enough() -> None:
    assert len(HOSTILE_URLS) >= 30
    assert len(set(HOSTILE_URLS)) == len(HOSTILE_URLS)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as hook:
        yield hook


# The table runs three checks per URL; one app and one receiver serve all of them (an app
# per URL would cost more than the checks). Each check runs on an empty queue.


@pytest.fixture(scope="module")
def table_receiver() -> Iterator[Receiver]:
    with Receiver() as hook:
        yield hook


@pytest.fixture(scope="module")
def table_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    from webapp import create_app

    folder = tmp_path_factory.mktemp("netguard") / "instance"
    shared = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(folder),
            "PUBLIC_URL": "http://darkroom.test",
            # The table submits and reads far faster than people.
            "RATE_LIMIT_CREATE": "100000/minute",
            "RATE_LIMIT_STATUS": "100000/minute",
        }
    )
    yield shared
    with shared.app_context():
        db.engine.dispose()


@pytest.fixture
def table(table_app: Flask, table_receiver: Receiver) -> Iterator[tuple[FlaskClient, Receiver]]:
    huey.flush()
    with table_app.app_context():
        yield table_app.test_client(), table_receiver
        db.session.remove()
    huey.flush()


def hostile(template: str, receiver: Receiver) -> str:
    return template.replace("{p}", str(receiver.port))


# -- at submission ------------------------------------------------------------------------


@pytest.mark.parametrize("template", HOSTILE_URLS)
def test_submission_refuses(table: tuple[FlaskClient, Receiver], template: str) -> None:
    client, receiver = table
    url = hostile(template, receiver)
    jobs_before = client.get(f"{API}/jobs").get_json()["total"]
    connections = receiver.connections
    response = client.post(f"{API}/jobs/generate", json={"prompt": "a fox", "webhook_url": url})
    assert response.status_code == 422, response.get_json()
    [error] = response.get_json()["detail"]
    assert error["loc"] == ["body", "webhook_url"]
    assert error["input"] == url
    assert client.get(f"{API}/jobs").get_json()["total"] == jobs_before
    assert huey.pending_count() == 0
    assert receiver.connections == connections


# -- at send: the guard itself ------------------------------------------------------------


@pytest.mark.parametrize("template", HOSTILE_URLS)
def test_resolve_refuses(table_receiver: Receiver, template: str) -> None:
    with pytest.raises(netguard.UnsafeURL):
        netguard.resolve(hostile(template, table_receiver), [])


# -- at send: a delivery ------------------------------------------------------------------


def finished_job_with_webhook(url: str) -> str:
    """A job that ended with `url` as its webhook (stored as if it had once been accepted)."""
    job = jobs.submit_job(JobCreate.model_validate({"prompt": "a fox"}))
    db.session.get(Job, job.id).webhook_url = url
    db.session.commit()
    jobs.cancel_job(job.id)  # ends it: the event is written and its delivery queued
    return job.id


def run_deliveries() -> list[str]:
    """Run the queued webhook deliveries in this process, as the consumer would."""
    from webapp.tasks import deliver_webhook

    ran = []
    while (task := huey.dequeue()) is not None:
        if task.name.endswith("deliver_webhook"):
            deliver_webhook.call_local(*task.args)
            ran.append(task.args[0])
    return ran


def fresh_reads() -> None:
    """Forget what this session loaded (the test client's requests share the test's session,
    and deliveries update events with bulk UPDATEs that leave loaded objects as they were)."""
    db.session.commit()
    db.session.expire_all()


def deliveries(client: FlaskClient, job_id: str) -> list[dict[str, Any]]:
    fresh_reads()
    response = client.get(f"{API}/jobs/{job_id}/webhooks")
    assert response.status_code == 200
    return list(response.get_json()["deliveries"])


def fresh_event(job_id: str) -> WebhookEvent:
    fresh_reads()
    event = db.session.get(WebhookEvent, webhooks.event_id_for(job_id))
    assert event is not None
    return event


@pytest.mark.parametrize("template", HOSTILE_URLS)
def test_delivery_refuses(table: tuple[FlaskClient, Receiver], template: str) -> None:
    client, receiver = table
    url = hostile(template, receiver)
    connections = receiver.connections
    job_id = finished_job_with_webhook(url)
    assert run_deliveries() == [webhooks.event_id_for(job_id)]
    [delivery] = deliveries(client, job_id)
    assert delivery["url"] == url
    assert delivery["status"] == "failed"  # a refusal is final: no retry is scheduled
    [attempt] = delivery["attempts"]
    assert attempt["error"].startswith("refused: ")
    assert attempt["status_code"] is None and attempt["response_excerpt"] is None
    assert huey.pending_count() == 0 and huey.scheduled_count() == 0
    assert receiver.connections == connections


def test_a_refusal_at_send_does_not_retry_even_if_asked_again(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    job_id = finished_job_with_webhook(receiver.url())
    run_deliveries()
    assert client.post(f"{API}/jobs/{job_id}/webhooks/redeliver").status_code == 202
    run_deliveries()
    [delivery] = deliveries(client, job_id)
    assert [a["error"][:8] for a in delivery["attempts"]] == ["refused:", "refused:"]
    assert delivery["status"] == "failed"
    assert receiver.connections == 0


# -- allowed networks ---------------------------------------------------------------------


def test_a_receiver_on_loopback_is_reached_only_when_allowed(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    # Not allowed: refused at submission...
    response = client.post(
        f"{API}/jobs/generate", json={"prompt": "a fox", "webhook_url": receiver.url()}
    )
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["type"] == "url_not_allowed"
    # ...and an allowed network elsewhere does not help.
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "10.0.0.0/8, 127.0.0.2/32, ::1/128"
    response = client.post(
        f"{API}/jobs/generate", json={"prompt": "a fox", "webhook_url": receiver.url()}
    )
    assert response.status_code == 422
    # Allowed: accepted, and delivered.
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    job_id = submit(client, webhook_url=receiver.url())["id"]
    jobs.cancel_job(job_id)
    run_deliveries()
    [request] = receiver.wait_for(1)
    assert request.peer[0] == "127.0.0.1"
    assert request.path == "/hook"


def test_refused_again_at_send_when_the_network_is_no_longer_allowed(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    job_id = submit(client, webhook_url=receiver.url())["id"]
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = ""
    jobs.cancel_job(job_id)
    run_deliveries()
    event = fresh_event(job_id)
    assert event.status == "failed"
    assert event.attempts[0].error.startswith("refused: ")
    assert receiver.connections == 0


def test_allowed_networks_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_config: dict[str, Any], receiver: Receiver
) -> None:
    from webapp import create_app

    monkeypatch.setenv("DARKROOM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32,fd00::/8")
    env_app = create_app(app_config)
    with env_app.app_context():
        allowed = netguard.parse_networks(env_app.config["WEBHOOK_ALLOWED_NETWORKS"])
        assert allowed == [
            ipaddress.ip_network("127.0.0.1/32"),
            ipaddress.ip_network("fd00::/8"),
        ]
        validation.check_webhook_url(receiver.url())  # no exception: allowed
        db.session.remove()
        db.engine.dispose()


# -- the connection goes to the checked address -------------------------------------------


def test_localhost_is_connected_at_the_checked_address_with_its_name_in_host(
    receiver: Receiver,
) -> None:
    allowed = netguard.parse_networks("127.0.0.0/8")
    url = f"http://localhost:{receiver.port}/hook?x=1#frag"
    target = netguard.resolve(url, allowed)
    assert target == netguard.Target("http", "localhost", receiver.port, "/hook?x=1", "127.0.0.1")
    answer = netguard.post(target, b"{}", {"Content-Type": "application/json"})
    assert answer.status == 200 and answer.body == b"ok"
    [request] = receiver.requests
    assert request.header("Host") == f"localhost:{receiver.port}"
    assert request.peer[0] == "127.0.0.1"
    assert request.path == "/hook?x=1"  # the fragment is never sent


def test_post_connects_to_the_target_address_without_a_second_lookup(
    receiver: Receiver,
) -> None:
    # The name cannot be resolved at all, so reaching the receiver proves that `post`
    # connects to the address that was checked and never looks the name up again.
    with pytest.raises(netguard.UnresolvableURL):
        netguard.resolve("http://rebinding.invalid/", [])
    target = netguard.Target("http", "rebinding.invalid", receiver.port, "/x", "127.0.0.1")
    answer = netguard.post(target, b"{}", {})
    assert answer.status == 200
    [request] = receiver.requests
    assert request.header("Host") == f"rebinding.invalid:{receiver.port}"
    assert request.peer[0] == "127.0.0.1"


def test_an_ipv6_receiver_gets_a_bracketed_host_header() -> None:
    with Receiver(host="::1") as hook:
        target = netguard.resolve(hook.url(), netguard.parse_networks("::1/128"))
        assert target.address == "::1"
        assert netguard.post(target, b"{}", {}).status == 200
        [request] = hook.requests
        assert request.peer[0] == "::1"
        assert request.header("Host") == f"[::1]:{hook.port}"


def test_environment_proxies_are_ignored(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    with Receiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        target = netguard.resolve(receiver.url(), netguard.parse_networks("127.0.0.1/32"))
        assert netguard.post(target, b"{}", {}).status == 200
        assert proxy.connections == 0
    [request] = receiver.requests
    assert request.path == "/hook"  # origin form: no proxy in between


# -- what `post` reads, and for how long --------------------------------------------------


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    with Receiver() as elsewhere:
        receiver.reply(Reply.redirect(elsewhere.url()))
        target = netguard.resolve(receiver.url(), netguard.parse_networks("127.0.0.1/32"))
        answer = netguard.post(target, b"{}", {})
        assert answer.status == 302
        assert elsewhere.connections == 0


def test_the_answer_is_read_to_64_kib_at_most(receiver: Receiver) -> None:
    receiver.reply(Reply(size=HUGE))
    target = netguard.resolve(receiver.url(), netguard.parse_networks("127.0.0.1/32"))
    started = time.monotonic()
    answer = netguard.post(target, b"{}", {})
    assert time.monotonic() - started < 2.0
    assert answer.status == 200
    assert answer.body == b"a" * (64 * 1024)
    [served] = receiver.wait_answered(1)
    assert served.cut_off and served.sent_bytes < HUGE


def test_an_endless_answer_is_cut(receiver: Receiver) -> None:
    receiver.reply(Reply(endless=True))
    target = netguard.resolve(receiver.url(), netguard.parse_networks("127.0.0.1/32"))
    started = time.monotonic()
    answer = netguard.post(target, b"{}", {})
    assert time.monotonic() - started < 2.0
    assert answer.status == 200 and len(answer.body) == 64 * 1024
    [served] = receiver.wait_answered(1)
    assert served.cut_off


def timed_post(url: str, **timeouts: float) -> tuple[float, BaseException | None]:
    """POST in a thread (so a guard that never gives up cannot hang the test run)."""
    target = netguard.resolve(url, netguard.parse_networks("127.0.0.1/32"))
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            netguard.post(target, b"{}", {}, **timeouts)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "post did not give up within 10 s"
    return time.monotonic() - started, outcome[0]


def test_a_silent_receiver_is_cut_off_at_the_total_timeout(receiver: Receiver) -> None:
    receiver.reply(Reply(hang=True))
    elapsed, error = timed_post(receiver.url(), connect_timeout=0.5, total_timeout=1.0)
    assert 0.9 <= elapsed < 2.0
    assert isinstance(error, urllib3.exceptions.TimeoutError)


@pytest.mark.parametrize(
    "reply", [Reply(trickle=0.1), Reply(trickle_body=0.1)], ids=["headers", "body"]
)
def test_a_trickling_receiver_is_cut_off_at_the_total_timeout(
    receiver: Receiver, reply: Reply
) -> None:
    # Each byte arrives well inside any read timeout; only a total deadline stops this.
    receiver.reply(reply)
    elapsed, error = timed_post(receiver.url(), connect_timeout=0.5, total_timeout=1.0)
    assert 0.9 <= elapsed < 2.0
    if reply.trickle:  # no status line yet: the attempt timed out
        assert isinstance(error, urllib3.exceptions.TimeoutError)
    else:  # the status arrived; the body is cut at the deadline
        assert error is None


def test_connecting_is_cut_off_at_the_connect_timeout() -> None:
    with Unanswered() as port:
        elapsed, error = timed_post(
            f"http://127.0.0.1:{port}/", connect_timeout=0.5, total_timeout=5.0
        )
    assert isinstance(error, urllib3.exceptions.ConnectTimeoutError)
    assert 0.4 <= elapsed < 1.5


# -- the guard's pieces -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert netguard.address_allowed(ipaddress.ip_address(address), [])


def test_public_ip_urls_resolve_to_themselves() -> None:
    target = netguard.resolve("https://93.184.216.34/hooks?a=b", [])
    assert target == netguard.Target("https", "93.184.216.34", 443, "/hooks?a=b", "93.184.216.34")
    target = netguard.resolve("http://[2606:4700:4700::1111]:8080", [])
    assert target == netguard.Target(
        "http", "2606:4700:4700::1111", 8080, "/", "2606:4700:4700::1111"
    )


def test_allowed_networks_admit_embedded_forms_of_their_addresses() -> None:
    allowed = netguard.parse_networks("127.0.0.1/32")
    assert netguard.address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), allowed)
    assert not netguard.address_allowed(ipaddress.ip_address("127.0.0.2"), allowed)


def test_parse_networks() -> None:
    assert netguard.parse_networks("") == []
    assert netguard.parse_networks(None) == []
    assert netguard.parse_networks(" 10.0.0.0/8 ,, 192.168.1.7 ") == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    ]
    assert netguard.parse_networks(["fd00::/8"]) == [ipaddress.ip_network("fd00::/8")]


def test_an_unresolvable_host_is_accepted_at_submission_and_retried_at_send(
    app: Flask, client: FlaskClient
) -> None:
    app.config["WEBHOOK_RETRY_DELAYS"] = "60"
    job_id = submit(client, webhook_url="http://no-such-host.invalid/hook")["id"]
    jobs.cancel_job(job_id)
    run_deliveries()
    event = fresh_event(job_id)
    assert event.status == "retrying"
    assert "could not be resolved" in event.attempts[0].error
