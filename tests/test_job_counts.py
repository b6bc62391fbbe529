"""The per-status job counts that triggers keep (migration 0004) and the listing's totals.

After every kind of change to the jobs table (the API, the worker's state machine, the
pages' delete, raw SQL, a bulk executemany as bench/populate.py does it, a migration over a
database that already had jobs), the counts must equal a real `count(*)`.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, select, text

from bench import populate
from tests.helpers import TEST_CONFIG, csrf_token, run_queue, submit
from webapp import attempts, create_app, jobs
from webapp.database import MIGRATIONS
from webapp.extensions import db, huey
from webapp.gallery import queue_counts
from webapp.job_counts import count_active, count_by_status, count_jobs, job_counts
from webapp.models import ACTIVE_STATUSES, JobStatus, now_utc

API = "/api/v1"
SMALL = {"width": 128, "height": 128, "num_inference_steps": 1}
STATUSES = [s.value for s in JobStatus]


def real_counts() -> dict[str, int]:
    """Jobs per status, counted the slow way (a fresh snapshot)."""
    db.session.commit()
    rows = db.session.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")).all()
    return {status: n for status, n in rows}


def kept_counts() -> dict[str, int]:
    """The trigger-kept table, without its rows at zero (a status whose jobs all left)."""
    rows = db.session.execute(select(job_counts.c.status, job_counts.c.count)).all()
    assert all(n >= 0 for _status, n in rows), rows
    return {status: n for status, n in rows if n}


def assert_exact(client: FlaskClient) -> dict[str, int]:
    """The counts, count_jobs and the API's totals all equal a real count(*)."""
    real = real_counts()
    assert kept_counts() == real
    assert count_jobs(None) == sum(real.values())
    assert count_by_status(STATUSES) == {s: real.get(s, 0) for s in STATUSES}
    assert count_active() == sum(real.get(s, 0) for s in ACTIVE_STATUSES)
    assert queue_counts() == {
        "waiting": real.get("pending", 0) + real.get("retrying", 0),
        "running": real.get("processing", 0),
    }
    body = client.get(f"{API}/jobs?per_page=1").get_json()
    assert body["total"] == sum(real.values())
    for status in STATUSES:
        assert count_jobs(status) == real.get(status, 0)
        body = client.get(f"{API}/jobs?status={status}&per_page=1").get_json()
        assert body["total"] == real.get(status, 0), status
        assert len(body["jobs"]) == min(1, real.get(status, 0))
    return real


def raw_sqlite(app: Flask) -> sqlite3.Connection:
    """A plain sqlite3 connection to the app's database, as bench scripts and sqlite3 use."""
    db.session.commit()  # no snapshot of ours in the way
    conn = sqlite3.connect(db.engine.url.database, timeout=15)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def triggers() -> set[str]:
    if db.engine.dialect.name == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND NOT tgisinternal"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    db.session.commit()
    names = set(db.session.scalars(text(sql)))
    db.session.commit()
    return names


def migrate_to(revision: str) -> None:
    db.session.remove()
    if revision == "0003":
        downgrade(directory=str(MIGRATIONS), revision=revision)
    else:
        upgrade(directory=str(MIGRATIONS), revision=revision)


# -- the app's own paths --------------------------------------------------------------------


def test_a_new_database_starts_at_zero(client: FlaskClient) -> None:
    assert kept_counts() == {}
    assert count_jobs(None) == 0 and count_jobs("completed") == 0
    assert count_jobs("no-such-status") == 0
    assert client.get(f"{API}/jobs").get_json()["total"] == 0


def test_submit_run_cancel_and_delete(client: FlaskClient, app: Flask) -> None:
    created = [submit(client, f"job {i}", parameters=SMALL) for i in range(3)]
    assert assert_exact(client) == {"pending": 3}

    assert run_queue() == 3
    assert assert_exact(client) == {"completed": 3}

    waiting = submit(client, "to cancel", parameters=SMALL)
    assert assert_exact(client) == {"completed": 3, "pending": 1}
    # DELETE /api/v1/jobs/<id> cancels (the API has no delete of a job).
    assert client.delete(f"{API}/jobs/{waiting['id']}").status_code == 204
    assert assert_exact(client) == {"completed": 3, "cancelled": 1}
    # Cancelling a finished job changes nothing.
    assert client.delete(f"{API}/jobs/{created[0]['id']}").status_code == 409
    assert assert_exact(client) == {"completed": 3, "cancelled": 1}

    # The pages delete a finished job (and its media rows, by cascade and by hand).
    response = client.post(
        f"/jobs/{created[0]['id']}/delete",
        data={"csrf_token": csrf_token(client)},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert assert_exact(client) == {"completed": 2, "cancelled": 1}

    # Deleting a waiting job cancels it first, then deletes it: two changes, one job less.
    pending = submit(client, "to delete while waiting", parameters=SMALL)
    jobs.delete_job(pending["id"])
    assert assert_exact(client) == {"completed": 2, "cancelled": 1}


def test_failure_retry_and_the_reaper(client: FlaskClient, app: Flask) -> None:
    job_id = submit(client, "flaky", parameters=SMALL)["id"]
    claim = attempts.claim_job(job_id)
    assert claim is not None
    assert assert_exact(client) == {"processing": 1}

    assert attempts.fail_attempt(claim, "Replicate API error: 503", transient=True) == "retrying"
    assert assert_exact(client) == {"retrying": 1}

    time.sleep(float(app.config["RETRY_MAX_SECONDS"]) + 0.02)
    claim = attempts.claim_job(job_id)
    assert claim is not None
    assert assert_exact(client) == {"processing": 1}

    # A stale claim's late failure is fenced out and changes no count.
    stale = dataclasses.replace(claim, token=str(uuid.uuid4()))
    assert attempts.fail_attempt(stale, "late", transient=False) is None
    assert assert_exact(client) == {"processing": 1}

    # The reaper puts a job whose lease ran out back in the queue.
    db.session.execute(
        text("UPDATE jobs SET lease_expires_at = :t WHERE id = :id"),
        {"t": now_utc().replace(year=2000).replace(tzinfo=None), "id": job_id},
    )
    db.session.commit()
    assert attempts.reap(set())["requeued"] == 1
    assert assert_exact(client) == {"retrying": 1}

    time.sleep(float(app.config["RETRY_MAX_SECONDS"]) + 0.02)
    claim = attempts.claim_job(job_id)
    assert attempts.fail_attempt(claim, "Model not found", transient=False) == "failed"
    assert assert_exact(client) == {"failed": 1}

    other = submit(client, "runs fine", parameters=SMALL)["id"]
    huey.flush()
    db.session.commit()
    assert attempts.claim_job(other) is not None
    assert assert_exact(client) == {"failed": 1, "processing": 1}


def test_an_update_that_keeps_the_status_counts_nothing(client: FlaskClient) -> None:
    submit(client, "a", parameters=SMALL)
    submit(client, "b", parameters=SMALL)
    db.session.execute(text("UPDATE jobs SET status = status, progress = 5"))
    db.session.commit()
    assert assert_exact(client) == {"pending": 2}
    # One statement moving rows both ways between two statuses.
    db.session.execute(text("UPDATE jobs SET status = 'failed' WHERE prompt = 'a'"))
    db.session.execute(
        text("UPDATE jobs SET status = CASE status WHEN 'failed' THEN 'pending' ELSE 'failed' END")
    )
    db.session.commit()
    assert assert_exact(client) == {"pending": 1, "failed": 1}


# -- writes from outside the app ------------------------------------------------------------


def test_direct_sql_deletes(client: FlaskClient, app: Flask) -> None:
    for i in range(4):
        submit(client, f"job {i}", parameters=SMALL)
    run_queue()
    submit(client, "waiting", parameters=SMALL)
    assert assert_exact(client) == {"completed": 4, "pending": 1}

    # Through the app's connection...
    ids = sorted(db.session.scalars(text("SELECT id FROM jobs WHERE status = 'completed'")))
    db.session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": ids[0]})
    db.session.commit()
    assert assert_exact(client) == {"completed": 3, "pending": 1}

    # ...and from a plain sqlite3 connection, with the media rows going by cascade.
    conn = raw_sqlite(app)
    with conn:
        conn.execute("DELETE FROM jobs WHERE id IN (?, ?)", (ids[1], ids[2]))
    media_left = conn.execute("SELECT count(*) FROM media WHERE job_id IN (?, ?)", ids[1:3])
    assert media_left.fetchone()[0] == 0
    with conn:
        conn.execute("DELETE FROM jobs WHERE status = 'pending'")
    conn.close()
    assert assert_exact(client) == {"completed": 1}


def test_bulk_executemany_as_bench_populate_does(client: FlaskClient, app: Flask) -> None:
    submit(client, "template", parameters=SMALL)
    run_queue()
    db_path = Path(db.engine.url.database)
    db.session.commit()
    populate.populate(db_path, 400, populate.read_template(db_path), seed=7)
    real = assert_exact(client)
    assert sum(real.values()) == 401 and real["completed"] > 300

    # A bulk status change and a bulk delete from plain sqlite3.
    conn = raw_sqlite(app)
    with conn:
        conn.executemany(
            "UPDATE jobs SET status = ? WHERE id = ?",
            [
                ("pending" if i % 2 else "failed", job_id)
                for i, (job_id,) in enumerate(
                    conn.execute("SELECT id FROM jobs WHERE status = 'completed' LIMIT 100")
                )
            ],
        )
        conn.execute("DELETE FROM jobs WHERE status = 'cancelled'")
    conn.close()
    assert assert_exact(client)["pending"] == 50


# -- the migration --------------------------------------------------------------------------


def test_upgrade_over_existing_jobs_backfills_and_downgrade_drops(
    client: FlaskClient, app: Flask
) -> None:
    for i in range(3):
        submit(client, f"job {i}", parameters=SMALL)
    run_queue()
    submit(client, "waiting", parameters=SMALL)
    huey.flush()
    assert assert_exact(client) == {"completed": 3, "pending": 1}
    assert triggers() == {"job_counts_insert", "job_counts_delete", "job_counts_update"}

    migrate_to("0003")
    assert triggers() == set()
    assert (
        "job_counts"
        not in db.session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")).all()
    )
    # A database at 0003 keeps changing with no one counting.
    db_path = Path(db.engine.url.database)
    populate.populate(db_path, 250, populate.read_template(db_path), seed=11)
    conn = raw_sqlite(app)
    with conn:
        conn.execute("UPDATE jobs SET status = 'retrying' WHERE status = 'pending'")
        conn.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 5)")
    before = {
        status: n for status, n in conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
    }
    conn.close()

    migrate_to("head")
    assert triggers() == {"job_counts_insert", "job_counts_delete", "job_counts_update"}
    assert assert_exact(client) == before
    # And the triggers count from there on.
    submit(client, "after the upgrade", parameters=SMALL)
    assert assert_exact(client) == {**before, "pending": before.get("pending", 0) + 1}


def test_a_fresh_app_on_a_0003_database_upgrades_at_start(tmp_path: Path) -> None:
    """What a deployment does: the new code starts on an old database with jobs in it."""
    instance = tmp_path / "old"
    app = create_app({**TEST_CONFIG, "INSTANCE_PATH": str(instance), "AUTO_MIGRATE": False})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0003")
        conn = raw_sqlite(app)
        now = now_utc().replace(tzinfo=None).isoformat(sep=" ")
        with conn:
            conn.executemany(
                "INSERT INTO jobs (id, status, prompt, model, parameters, provider_parameters,"
                " warnings, progress, retry_count, max_retries, created_at, updated_at)"
                " VALUES (?, ?, 'p', 'demo', '{}', '{}', '[]', 0, 0, 3, ?, ?)",
                [
                    (str(uuid.uuid4()), status, now, now)
                    for status in ["completed"] * 7 + ["failed"] * 2 + ["pending"]
                ],
            )
        conn.close()
        db.session.remove()
        db.engine.dispose()
    app = create_app({**TEST_CONFIG, "INSTANCE_PATH": str(instance)})
    with app.app_context():
        assert kept_counts() == {"completed": 7, "failed": 2, "pending": 1}
        assert assert_exact(app.test_client()) == {"completed": 7, "failed": 2, "pending": 1}
        db.session.remove()
        db.engine.dispose()


# -- PostgreSQL -----------------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get(
    "DARKROOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, or a skip when no server answers."""
    try:
        admin = create_engine(
            PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
        )
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    name = f"darkroom_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_postgresql_triggers_and_backfill(pg_url: str, tmp_path: Path) -> None:
    huey.flush()
    config: dict[str, Any] = {
        **TEST_CONFIG,
        "INSTANCE_PATH": str(tmp_path / "pg"),
        "SQLALCHEMY_DATABASE_URI": pg_url,
    }
    app = create_app(config)
    try:
        with app.app_context():
            client = app.test_client()
            assert triggers() == {"job_counts_insert_delete", "job_counts_update"}
            ids = [submit(client, f"job {i}", parameters=SMALL)["id"] for i in range(3)]
            assert assert_exact(client) == {"pending": 3}
            assert run_queue() == 3
            assert assert_exact(client) == {"completed": 3}

            job_id = submit(client, "flaky", parameters=SMALL)["id"]
            huey.flush()
            claim = attempts.claim_job(job_id)
            assert attempts.fail_attempt(claim, "503", transient=True) == "retrying"
            assert assert_exact(client) == {"completed": 3, "retrying": 1}
            time.sleep(float(app.config["RETRY_MAX_SECONDS"]) + 0.02)
            claim = attempts.claim_job(job_id)
            assert assert_exact(client) == {"completed": 3, "processing": 1}
            assert client.delete(f"{API}/jobs/{job_id}").status_code == 204
            assert assert_exact(client) == {"completed": 3, "cancelled": 1}

            jobs.delete_job(ids[0])
            db.session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": ids[1]})
            db.session.execute(
                text("UPDATE jobs SET status = CASE status WHEN 'cancelled' THEN 'failed'"
                     " ELSE 'cancelled' END")
            )  # fmt: skip
            db.session.commit()
            assert assert_exact(client) == {"cancelled": 1, "failed": 1}

            # A bulk executemany on a plain driver connection.
            raw = db.engine.raw_connection()
            try:
                cur = raw.cursor()
                now = now_utc().replace(tzinfo=None)
                cur.executemany(
                    "INSERT INTO jobs (id, status, prompt, model, parameters,"
                    " provider_parameters, warnings, progress, retry_count, max_retries,"
                    " created_at, updated_at)"
                    " VALUES (%s, %s, 'p', 'demo', '{}', '{}', '[]', 0, 0, 3, %s, %s)",
                    [(str(uuid.uuid4()), s, now, now) for s in ["completed"] * 20 + ["pending"]],
                )
                raw.commit()
            finally:
                raw.close()
            real = assert_exact(client)
            assert real == {"cancelled": 1, "failed": 1, "completed": 20, "pending": 1}

            # Down to 0003, change the jobs uncounted, and up again: the backfill is exact.
            migrate_to("0003")
            assert triggers() == set()
            db.session.execute(text("UPDATE jobs SET status = 'failed' WHERE status = 'pending'"))
            db.session.execute(text("DELETE FROM jobs WHERE status = 'cancelled'"))
            db.session.commit()
            migrate_to("head")
            assert assert_exact(client) == {"failed": 2, "completed": 20}
            db.session.remove()
            db.engine.dispose()
    finally:
        huey.flush()
