"""job counts per status, kept by triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:40:00.000000

The job listing's `total` is read from `job_counts` (one row per status) instead of
counting the jobs table. Triggers on `jobs` keep the table exact for every INSERT, DELETE
(ON DELETE CASCADE only runs from jobs to its children) and change of status, whoever
writes: the app, a raw sqlite3 executemany, psql. The table is filled from the jobs already
there in the same migration, after the triggers exist and while the migration holds the
write lock (SQLite) or a SHARE ROW EXCLUSIVE lock on jobs (PostgreSQL), so no job is
missed or counted twice.

Not seen by the triggers: TRUNCATE on PostgreSQL (no row triggers fire), and INSERT OR
REPLACE on SQLite without PRAGMA recursive_triggers (the replaced row's DELETE trigger does
not fire). A later migration that rebuilds `jobs` (a SQLite batch "move and copy", which
render_as_batch makes of most column changes) drops these triggers with the old table and
must create them again, with the statements below.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs
    BEGIN
        INSERT INTO job_counts (status, count) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET count = job_counts.count + 1;
    END
    """,
    """
    CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
    BEGIN
        UPDATE job_counts SET count = count - 1 WHERE status = OLD.status;
    END
    """,
    """
    CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs
    WHEN OLD.status <> NEW.status
    BEGIN
        UPDATE job_counts SET count = count - 1 WHERE status = OLD.status;
        INSERT INTO job_counts (status, count) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET count = job_counts.count + 1;
    END
    """,
)

# One function for the three events. A change of status touches its two counter rows in
# the order of their names, so two concurrent transactions (a claim taking
# retrying -> processing while a failure writes processing -> retrying) lock them in the
# same order and cannot deadlock on them.
_POSTGRESQL_TRIGGERS = (
    """
    CREATE FUNCTION job_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.status < OLD.status THEN
            INSERT INTO job_counts (status, count) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET count = job_counts.count + 1;
            UPDATE job_counts SET count = count - 1 WHERE status = OLD.status;
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE job_counts SET count = count - 1 WHERE status = OLD.status;
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO job_counts (status, count) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET count = job_counts.count + 1;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER job_counts_insert_delete AFTER INSERT OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_counts_track()
    """,
    """
    CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION job_counts_track()
    """,
)


def create_triggers(dialect):
    """Create the counting triggers on jobs for this dialect."""
    if dialect == 'postgresql':
        statements = _POSTGRESQL_TRIGGERS
    elif dialect == 'sqlite':
        statements = _SQLITE_TRIGGERS
    else:
        raise NotImplementedError(f'job_counts triggers for {dialect}')
    for statement in statements:
        op.execute(statement)


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table('job_counts',
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('status')
    )
    if dialect == 'postgresql':
        # Writers wait from here to the commit: none slips between the backfill and the
        # triggers (CREATE TRIGGER takes this lock too; taken first, it is explicit).
        op.execute('LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE')
    create_triggers(dialect)
    op.execute(
        'INSERT INTO job_counts (status, count) '
        'SELECT status, count(*) FROM jobs GROUP BY status'
    )


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS job_counts_update ON jobs')
        op.execute('DROP TRIGGER IF EXISTS job_counts_insert_delete ON jobs')
        op.execute('DROP FUNCTION IF EXISTS job_counts_track()')
    else:
        op.execute('DROP TRIGGER IF EXISTS job_counts_update')
        op.execute('DROP TRIGGER IF EXISTS job_counts_delete')
        op.execute('DROP TRIGGER IF EXISTS job_counts_insert')
    op.drop_table('job_counts')
