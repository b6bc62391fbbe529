"""job_inputs: which uploads a job takes as its image and mask

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 20:15:00.000000

A new table only; `jobs` is not touched (its 0004 triggers stay).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_inputs',
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('upload_id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'role'),
    )
    op.create_index('ix_job_inputs_upload_id', 'job_inputs', ['upload_id'])


def downgrade():
    op.drop_index('ix_job_inputs_upload_id', table_name='job_inputs')
    op.drop_table('job_inputs')
