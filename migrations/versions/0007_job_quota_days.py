"""job_quota_days: the daily job quota's counter, one row per user and UTC day

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 18:10:00.000000

The quota counted the jobs that still existed, so deleting jobs gave their places back; the
counter is raised as each job is stored and never lowered.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_quota_days',
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('user_id', 'day'),
    )


def downgrade():
    op.drop_table('job_quota_days')
