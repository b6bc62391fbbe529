"""backends and previews: the servers of self-hosted providers, a job's backend, its live
preview and what the provider reported about its run

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 20:40:00.000000

The columns of `jobs` are added in place (no batch rebuild), so the triggers of 0004 on
`jobs` stay.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('jobs', sa.Column('backend', sa.String(length=300), nullable=True))
    op.add_column(
        'jobs',
        sa.Column('backend_failovers', sa.Integer(), nullable=False, server_default='0'),
    )
    op.add_column('jobs', sa.Column('provider_output', sa.JSON(), nullable=True))
    op.create_table(
        'backends',
        sa.Column('key', sa.String(length=320), nullable=False),
        sa.Column('provider', sa.String(length=16), nullable=False),
        sa.Column('url', sa.String(length=300), nullable=False),
        sa.Column('up', sa.Boolean(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('down_until', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('models', sa.JSON(), nullable=False),
        sa.Column('info', sa.JSON(), nullable=False),
        sa.Column('checked_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_table(
        'job_previews',
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('mime_type', sa.String(length=32), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id'),
    )


def downgrade():
    op.drop_table('job_previews')
    op.drop_table('backends')
    op.drop_column('jobs', 'provider_output')
    op.drop_column('jobs', 'backend_failovers')
    op.drop_column('jobs', 'backend')
