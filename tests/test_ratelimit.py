"""Rate limits: per client, shared by the API and the browser, exact across processes."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.procs import API, running_stack
from webapp.ratelimit import SharedMemoryStorage

BODY = {"prompt": "a limited fox", "parameters": {"width": 128, "height": 128}}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "RATE_LIMIT_CREATE": "3/minute", "RATE_LIMIT_STATUS": "4/minute"}


def create(client: FlaskClient, **headers: str):
    return client.post(f"{API}/jobs/generate", json=BODY, headers=headers)


def test_creation_is_limited_per_client(client: FlaskClient) -> None:
    answers = [create(client) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[-1].headers["X-RateLimit-Limit"] == "3"
    assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
    refused = create(client)
    assert refused.status_code == 429
    body = refused.get_json()
    assert set(body) == {"detail", "request_id"}
    assert "3 per 1 minute" in body["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "X-RateLimit-Reset" in refused.headers
    assert client.get(f"{API}/jobs").get_json()["total"] == 3, "a refused request stores nothing"
    # Another client has its own bucket.
    other = client.post(f"{API}/jobs/generate", json=BODY, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 201


def test_api_and_browser_share_the_creation_bucket(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert create(client).status_code == 201
    assert create(client).status_code == 201
    form = {"csrf_token": token, "prompt": "from the form", "model": "demo"}
    assert client.post("/jobs", data=form, headers={"HX-Request": "true"}).status_code == 200
    refused = client.post("/jobs", data=form, headers={"HX-Request": "true"})
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert "Retry-After" in refused.headers
    assert create(client).status_code == 429


def test_status_reads_are_limited_but_browser_polling_is_not(client: FlaskClient) -> None:
    job = create(client).get_json()
    codes = [client.get(job["status_url"]).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    polls = [client.get(f"/poll?id={job['id']}", headers={"HX-Request": "true"}) for _ in range(10)]
    assert {p.status_code for p in polls} == {200}


def test_a_forged_forwarded_for_buys_nothing(client: FlaskClient) -> None:
    codes = [create(client, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]


@pytest.mark.parametrize("trusted", [1])
def test_a_trusted_proxy_count_uses_the_forwarded_address(
    app_config: dict[str, Any], trusted: int, tmp_path: Path
) -> None:
    from webapp import create_app

    app = create_app({**app_config, "TRUSTED_PROXIES": trusted, "INSTANCE_PATH": str(tmp_path)})
    client = app.test_client()
    codes = [create(client, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(5)]
    assert codes == [201] * 5, "each forwarded client has its own bucket"
    same = [create(client, **{"X-Forwarded-For": "198.51.100.1"}).status_code for _ in range(4)]
    assert same == [201, 201, 201, 429]


@pytest.mark.e2e
def test_the_limit_is_exact_across_web_processes(tmp_path: Path) -> None:
    """Two gunicorn workers (the Procfile's default) still grant exactly 10 a minute."""
    env = {"DARKROOM_RATE_LIMIT_CREATE": "10/minute", "WEB_CONCURRENCY": "2"}
    with running_stack(tmp_path, worker=False, env=env) as stack:
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(
                pool.map(
                    lambda _: stack.post(f"{API}/jobs/generate", json=BODY).status_code, range(30)
                )
            )
        assert codes.count(201) == 10, codes
        assert codes.count(429) == 20, codes
        booted = set(re.findall(r"Booting worker with pid: (\d+)", stack.log_text("web")))
        assert len(booted) == 2, "the limit held across two web processes"
        assert stack.get(f"{API}/jobs").json()["total"] == 10


def test_every_limited_answer_carries_the_headers(client: FlaskClient) -> None:
    job = create(client).get_json()
    first = client.get(job["status_url"])
    assert first.headers["X-RateLimit-Limit"] == "4"
    assert first.headers["X-RateLimit-Remaining"] == "3"
    assert "Retry-After" not in first.headers
    for _ in range(3):
        client.get(job["status_url"])
    refused = client.get(job["status_url"])
    assert refused.status_code == 429
    assert refused.get_json()["detail"] == "Rate limit exceeded: 4 per 1 minute"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert 0 < reset - time.time() <= 61
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # Endpoints without a limit carry none of it.
    assert "X-RateLimit-Limit" not in client.get(f"{API}/jobs").headers


def test_a_broken_counter_store_lets_requests_through(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    from webapp import create_app

    instance = tmp_path / "broken"
    app = create_app({**app_config, "INSTANCE_PATH": str(instance)})
    (instance / "ratelimit.shm").mkdir()  # a directory cannot be mapped
    client = app.test_client()
    codes = [create(client).status_code for _ in range(5)]
    assert codes == [201] * 5
    assert "X-RateLimit-Limit" not in create(client).headers


# -- the shared-memory counter table ------------------------------------------------------


def _hammer(path: str, keys: int, hits: int) -> None:
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    for i in range(hits):
        storage.incr(f"key-{i % keys}", 60)


def test_counts_are_exact_across_processes_and_threads(tmp_path: Path) -> None:
    path = str(tmp_path / "counters.shm")
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_hammer, args=(path, 7, 3000)) for _ in range(3)]
    for proc in procs:
        proc.start()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: _hammer(path, 7, 1000), range(4)))
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    assert sum(storage.get(f"key-{k}") for k in range(7)) == 3 * 3000 + 4 * 1000


def test_a_window_ends_and_starts_again(tmp_path: Path) -> None:
    storage = SharedMemoryStorage(f"darkroom+shm://{tmp_path / 'c.shm'}")
    assert storage.hit("k", 1)[0] == 1
    count, ends = storage.hit("k", 1)
    assert count == 2 and 0 < ends - time.time() <= 1
    assert storage.get("k") == 2 and storage.get_expiry("k") == ends
    assert storage.get("other") == 0
    time.sleep(1.05)
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1, "an ended window starts again from this hit"
    storage.clear("k")
    assert storage.get("k") == 0
    storage.incr("k", 60)
    storage.reset()
    assert storage.get("k") == 0
    assert storage.check()


class TinyTable(SharedMemoryStorage):
    SLOTS = 8
    PROBES = 4


def test_a_full_table_gives_up_the_window_that_ends_soonest(tmp_path: Path) -> None:
    storage = TinyTable(f"darkroom+shm://{tmp_path / 'tiny.shm'}")
    keys = [f"client-{i}" for i in range(40)]
    for n, key in enumerate(keys):
        storage.incr(key, 60 + n)  # later keys' windows end later
    for key in keys:
        storage.incr(key, 60)
    # Every live window is counted right or was given up for a newer one: never over.
    counts = [storage.get(key) for key in keys]
    assert all(c in (0, 1, 2) for c in counts)
    assert counts[-1] == 2, "the newest key keeps its count"
    assert sum(1 for c in counts if c) <= TinyTable.SLOTS


def test_a_file_of_another_layout_is_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "c.shm"
    path.write_bytes(b"not a counter table" * 10)
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    assert storage.incr("k", 60) == 1
    assert path.stat().st_size == storage.size
    assert SharedMemoryStorage(f"darkroom+shm://{path}").get("k") == 1, "kept once valid"


def _redis_url() -> str | None:
    url = os.environ.get("DARKROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def test_with_redis_the_counters_live_in_redis(app_config: dict[str, Any], tmp_path: Path) -> None:
    """The scale-out path: REDIS_URL puts the counters where every machine sees them."""
    url = _redis_url()
    if url is None:
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    from webapp import create_app

    app = create_app({**app_config, "REDIS_URL": url, "INSTANCE_PATH": str(tmp_path / "i")})
    client = app.test_client()
    # A client address of its own, so that runs within the same minute do not share a bucket.
    me = {"REMOTE_ADDR": f"198.18.{os.getpid() % 250}.{int(time.time()) % 250}"}
    job = client.post(f"{API}/jobs/generate", json=BODY, environ_base=me).get_json()
    answers = [client.get(job["status_url"], environ_base=me) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Remaining"] == "3"
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    assert not (tmp_path / "i" / "ratelimit.shm").exists(), "nothing counted on this box"
    other = create_app({**app_config, "REDIS_URL": url, "INSTANCE_PATH": str(tmp_path / "j")})
    refused = other.test_client().get(job["status_url"], environ_base=me)
    assert refused.status_code == 429, "a second server sees the same counters"


def _first_hits(storage: SharedMemoryStorage, barrier: threading.Barrier) -> None:
    barrier.wait(5)
    for _ in range(20):
        storage.incr("shared", 60)


def test_threads_sharing_one_table_never_lose_the_lock(tmp_path: Path) -> None:
    """First hits from several threads at once, on one storage object, in a fresh process state."""
    for round_ in range(40):
        storage = SharedMemoryStorage(f"darkroom+shm://{tmp_path / f'r{round_ % 3}.shm'}")
        barrier = threading.Barrier(6)

        threads = [
            threading.Thread(target=_first_hits, args=(storage, barrier), daemon=True)
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive(), f"round {round_}: a thread hung on the table lock"
        # Another open of the file can still take the lock: none was left behind.
        other = SharedMemoryStorage(f"darkroom+shm://{tmp_path / f'r{round_ % 3}.shm'}")
        assert other.get("shared") >= 120


def _hold_mapping(path: str, ready: Any, go: Any, result: Any) -> None:
    storage = SharedMemoryStorage(f"darkroom+shm://{path}")
    storage.incr("old", 60)
    ready.set()
    go.wait(30)
    result.put(storage.incr("old", 60))  # would die of SIGBUS if the file had shrunk


class OtherLayout(SharedMemoryStorage):
    SLOTS = 64
    MAGIC = b"darkroom-ratelimit-v9\0\0\0"


def test_a_new_layout_never_pulls_the_file_from_under_a_running_process(tmp_path: Path) -> None:
    path = str(tmp_path / "c.shm")
    context = multiprocessing.get_context("fork")
    ready, go, result = context.Event(), context.Event(), context.Queue()
    proc = context.Process(target=_hold_mapping, args=(path, ready, go, result))
    proc.start()
    assert ready.wait(30)
    newer = OtherLayout(f"darkroom+shm://{path}")
    assert newer.incr("new", 60) == 1
    assert Path(path).stat().st_size == newer.size
    go.set()
    proc.join(30)
    assert proc.exitcode == 0, "the old process survived the new layout"
    assert result.get(timeout=5) == 2, "and kept counting in the table it had mapped"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_stuck_lock_holder_delays_requests_by_a_second_at_most(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    from webapp import create_app

    instance = tmp_path / "stuck"
    app = create_app({**app_config, "INSTANCE_PATH": str(instance)})
    client = app.test_client()
    assert create(client).status_code == 201  # the table exists now
    holder = os.open(instance / "ratelimit.shm", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # as a process stopped while holding it would
        started = time.monotonic()
        answer = create(client)
        assert answer.status_code == 201, "let through, not refused or failed"
        assert "X-RateLimit-Limit" not in answer.headers
        assert time.monotonic() - started < 5
    finally:
        os.close(holder)
    assert create(client).headers["X-RateLimit-Remaining"] == "1", "counting resumes"
