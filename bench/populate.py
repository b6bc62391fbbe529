"""Fill a copy of a Darkroom database with many realistic jobs, fast (SQL executemany).

Rows are copied from a real job and its media row that the web and worker processes made
(every column as the app writes it), with fresh ids, prompts, seeds and timestamps spread
over the past weeks: mostly completed jobs with their media rows, some failed or cancelled.
"""

from __future__ import annotations

import base64
import json
import random
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_SENTENCE = (
    "sunset mountains lighthouse storm sea forest misty river city neon night desert dunes "
    "aurora snow winter autumn tree castle ruins moon stars galaxy planet ocean waves cliff "
    "harbor boats rain street cafe portrait cat dog fox owl whale garden flowers temple "
    "volcano glacier canyon meadow field golden hour dawn dusk fog bridge tower train "
    "watercolor oil painting cinematic photo minimal poster retro vibrant pastel dark"
)
WORDS = _SENTENCE.split()

STATUS_MIX = (("completed", 0.92), ("failed", 0.05), ("cancelled", 0.03))
# The prompt of the one real job (default size, with its media) that make_template keeps.
TEMPLATE_PROMPT = "a default-size job"


def _stamp(dt: datetime) -> str:
    """How SQLAlchemy's DateTime stores a naive UTC time in SQLite."""
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_stamp(text: str) -> datetime:
    """A time as SQLAlchemy's DateTime stored it, read back as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


def read_template(db_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A completed job that has a media row, and that media row, as column dicts."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        job = conn.execute(
            "SELECT * FROM jobs WHERE status = 'completed' AND id IN (SELECT job_id FROM media) "
            "ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        if job is None:
            raise RuntimeError("no completed job with media to copy")
        media = conn.execute(
            "SELECT * FROM media WHERE job_id = ? ORDER BY position LIMIT 1", (job["id"],)
        ).fetchone()
        return dict(job), dict(media)
    finally:
        conn.close()


def empty_copy(source: Path, target: Path) -> None:
    """A copy of the database (schema, migrations table) with no jobs in it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
    for table in ("webhook_attempts", "webhook_events", "media", "jobs", "worker_beats"):
        dst.execute(f"DELETE FROM {table}")
    dst.commit()
    dst.execute("VACUUM")
    dst.execute("PRAGMA journal_mode=WAL")
    dst.close()


def populate(
    db_path: Path,
    count: int,
    template: tuple[dict[str, Any], dict[str, Any]],
    *,
    seed: int = 1234,
    now: datetime | None = None,
) -> None:
    """Insert `count` jobs (and a media row per completed job), newest `now`."""
    job_t, media_t = template
    rng = random.Random(seed)
    now = now or datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    params_t = json.loads(job_t["parameters"]) if job_t.get("parameters") else {}
    # Spread over about three weeks (newest first), so nothing is past retention.
    span = timedelta(days=20).total_seconds()
    gaps = sorted(rng.uniform(0, span) for _ in range(count))
    jobs: list[dict[str, Any]] = []
    medias: list[dict[str, Any]] = []
    statuses = [s for s, _ in STATUS_MIX]
    weights = [w for _, w in STATUS_MIX]
    for i in range(count):
        created = now - timedelta(seconds=gaps[i])
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        status = rng.choices(statuses, weights)[0]
        params = dict(params_t, seed=rng.randrange(0, 2_147_483_647))
        started = created + timedelta(seconds=rng.uniform(0.05, 1.0))
        finished = started + timedelta(seconds=rng.uniform(1.0, 12.0))
        row = dict(job_t)
        row.update(
            id=job_id,
            status=status,
            prompt=" ".join(rng.choices(WORDS, k=rng.randint(4, 14))),
            parameters=json.dumps(params),
            provider_parameters=json.dumps(params),
            created_at=_stamp(created),
            updated_at=_stamp(finished),
            started_at=_stamp(started) if status != "cancelled" else None,
            completed_at=_stamp(finished) if status == "completed" else None,
            progress=100.0 if status == "completed" else 0.0,
            error_message=None,
            error_details=None,
            lease_token=None,
            lease_expires_at=None,
        )
        if status == "failed":
            row["error_message"] = "Replicate API error: Model not found"
            row["error_details"] = json.dumps({"retry_count": 3, "max_retries": 3})
        jobs.append(row)
        if status == "completed":
            media_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            m = dict(media_t)
            m.update(
                id=media_id,
                job_id=job_id,
                position=0,
                storage_path=f"generated/{media_id}{media_t['file_extension']}",
                thumbnail_path=f"thumbnails/{media_id}.webp",
                sha256=uuid.UUID(int=rng.getrandbits(128)).hex * 2,
                created_at=_stamp(finished),
                expires_at=_stamp(finished + timedelta(days=30)),
                purged_at=None,
            )
            medias.append(m)
    conn = sqlite3.connect(db_path)
    try:
        for table, rows in (("jobs", jobs), ("media", medias)):
            if rows:
                cols = list(rows[0])
                insert_rows(conn, table, cols, [tuple(r[c] for c in cols) for r in rows])
        conn.commit()
    finally:
        conn.close()


def insert_rows(
    conn: sqlite3.Connection, table: str, cols: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows given as tuples in the order of `cols` (one executemany)."""
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    conn.executemany(sql, rows)


def make_template(source: Path, target: Path) -> None:
    """An empty copy of `source` holding only its default-size completed job and its media.

    The job was made by the real web and worker processes, so every column of the rows
    that `populate` copies from it is as the app writes it.
    """
    empty_copy(source, target)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        job = src.execute(
            "SELECT * FROM jobs WHERE status = 'completed' AND prompt = ?", (TEMPLATE_PROMPT,)
        ).fetchone()
        cols = [d[0] for d in src.execute("SELECT * FROM jobs LIMIT 0").description]
        media = src.execute("SELECT * FROM media WHERE job_id = ?", (job[0],)).fetchall()
        mcols = [d[0] for d in src.execute("SELECT * FROM media LIMIT 0").description]
    finally:
        src.close()
    dst = sqlite3.connect(target)
    try:
        insert_rows(dst, "jobs", cols, [job])
        insert_rows(dst, "media", mcols, media)
        dst.commit()
    finally:
        dst.close()


def gallery_cursor(db_path: Path, rank: int) -> str:
    """The gallery's cursor after the job at `rank` (0 = newest), as webapp.gallery encodes it."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        created, job_id = conn.execute(
            "SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
            (rank,),
        ).fetchone()
    finally:
        conn.close()
    raw = f"{parse_stamp(created).isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def count_rows(db_path: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()
