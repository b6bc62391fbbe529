"""How many jobs there are, per status, from the `job_counts` table.

Triggers on `jobs` (migration 0004) keep one row per status exact through every insert,
delete and change of status, so a count is one primary-key read instead of a walk over
the status index (about 92,000 entries for `completed` at 100,000 jobs).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, Integer, String, Table, bindparam, func, or_, select

from webapp.extensions import db
from webapp.models import ACTIVE_STATUSES

# On the app's metadata so that autogenerate sees the table as known; migration 0004
# creates it, with the triggers that fill it.
job_counts = Table(
    "job_counts",
    db.metadata,
    Column("status", String(16), primary_key=True),
    Column("count", Integer, nullable=False),
)

_ONE_STATUS = select(job_counts.c.count).where(job_counts.c.status == bindparam("status"))
_EVERY_STATUS = select(func.coalesce(func.sum(job_counts.c.count), 0))
# Equalities rather than IN: an IN list is rendered again at every execution.
_ACTIVE = select(func.coalesce(func.sum(job_counts.c.count), 0)).where(
    or_(*(job_counts.c.status == str(status) for status in ACTIVE_STATUSES))
)
_SOME_STATUSES = select(job_counts.c.status, job_counts.c.count).where(
    job_counts.c.status.in_(bindparam("statuses", expanding=True))
)


def count_jobs(status: str | None = None) -> int:
    """How many jobs have this status; with no status (None or ""), how many jobs in all.

    Read on the session's connection, so it sees the same snapshot as the session's other
    queries in this transaction.
    """
    connection = db.session.connection()
    if status:
        value = connection.execute(_ONE_STATUS, {"status": status}).scalar()
    else:
        value = connection.execute(_EVERY_STATUS).scalar()
    return int(value or 0)


def count_by_status(statuses: Iterable[str]) -> dict[str, int]:
    """How many jobs have each of these statuses (0 for a status no job ever had)."""
    wanted = [str(s) for s in statuses]
    rows = db.session.connection().execute(_SOME_STATUSES, {"statuses": wanted}).all()
    counts = {status: int(n) for status, n in rows}
    return {status: counts.get(status, 0) for status in wanted}


def count_active() -> int:
    """How many jobs wait or run (every status of `ACTIVE_STATUSES`)."""
    return int(db.session.connection().execute(_ACTIVE).scalar() or 0)
