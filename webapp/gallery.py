"""Gallery queries: keyset pages with search and status filter, running cards, queue counts."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.orm import selectinload

from webapp.extensions import db
from webapp.job_counts import count_by_status
from webapp.models import ACTIVE_STATUSES, Job, JobStatus, UTCDateTime

PAGE_SIZE = 24
MAX_SEARCH_WORDS = 8


@dataclass(frozen=True)
class Cursor:
    """Where a gallery page ends: the last job's creation time and id."""

    created_at: datetime
    job_id: str

    def encode(self) -> str:
        """An opaque, URL-safe token."""
        raw = f"{self.created_at.isoformat()}|{self.job_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str | None) -> Cursor | None:
        """Read a token back; a damaged one means "from the start"."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            stamp, job_id = raw.split("|", 1)
            when = datetime.fromisoformat(stamp)
            # Compared with UTC times: a forged offset may push the date out of range.
            when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
            return cls(when, job_id[:36])
        except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error):
            return None


@dataclass
class GalleryPage:
    """One page of cards and the cursor of the next, if any."""

    jobs: list[Job]
    next_cursor: str | None


def search_words(query: str | None) -> list[str]:
    """The words of a search box, lower-cased, at most a handful."""
    return [w for w in (query or "").lower().split() if w][:MAX_SEARCH_WORDS]


def _like_pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def gallery_page(
    cursor: str | None = None,
    query: str | None = None,
    status: str | None = None,
    limit: int = PAGE_SIZE,
    owner: str | None = None,
) -> GalleryPage:
    """Jobs newest first after `cursor`, matching every search word and the status (and of
    one owner, if given)."""
    stmt = select(Job).options(selectinload(Job.media))
    if owner is not None:
        stmt = stmt.where(Job.owner_id == owner)
    if status in {s.value for s in JobStatus}:
        stmt = stmt.where(Job.status == status)
    elif status == "active":
        stmt = stmt.where(Job.status.in_(ACTIVE_STATUSES))
    for word in search_words(query):
        stmt = stmt.where(func.lower(Job.prompt).like(_like_pattern(word), escape="\\"))
    after = Cursor.decode(cursor)
    if after is not None:
        # Keyset pagination: constant cost however deep the page, via (created_at, id).
        # A row-value comparison, which the index answers directly (an OR of the two
        # conditions made SQLite scan).
        stmt = stmt.where(
            tuple_(Job.created_at, Job.id)
            < tuple_(literal(after.created_at, UTCDateTime()), after.job_id)
        )
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(db.session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = Cursor(last.created_at, last.id).encode()
    return GalleryPage(rows, next_cursor)


def jobs_by_ids(ids: list[str], owner: str | None = None) -> list[Job]:
    """The jobs with these ids (unknown ids, and other owners' with an `owner`, are skipped)."""
    wanted = [i for i in dict.fromkeys(ids) if i][:100]
    if not wanted:
        return []
    stmt = select(Job).options(selectinload(Job.media)).where(Job.id.in_(wanted))
    if owner is not None:
        stmt = stmt.where(Job.owner_id == owner)
    return list(db.session.scalars(stmt))


def queue_counts(owner: str | None = None) -> dict[str, int]:
    """How many jobs wait and how many run: everyone's from the per-status counts (constant
    cost), or one owner's from the owner's status index."""
    if owner is None:
        counts = count_by_status(ACTIVE_STATUSES)
    else:
        rows = db.session.execute(
            select(Job.status, func.count())
            .where(Job.owner_id == owner, Job.status.in_(ACTIVE_STATUSES))
            .group_by(Job.status)
        ).all()
        counts = {str(status): int(n) for status, n in rows}
    return {
        "waiting": counts.get(JobStatus.PENDING, 0) + counts.get(JobStatus.RETRYING, 0),
        "running": counts.get(JobStatus.PROCESSING, 0),
    }
