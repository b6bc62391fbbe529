"""uploads: pictures sent as inputs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:45:00.000000

A new table only; `jobs` is not touched (its 0004 triggers stay).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'uploads',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('owner_id', sa.String(length=36), nullable=True),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('mime_type', sa.String(length=64), nullable=False),
        sa.Column('file_extension', sa.String(length=8), nullable=False),
        sa.Column('storage_path', sa.String(length=255), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('file_size_bytes', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_uploads_owner_sha256', 'uploads', ['owner_id', 'sha256'])
    op.create_index('ix_uploads_expires_at', 'uploads', ['expires_at'])


def downgrade():
    op.drop_index('ix_uploads_expires_at', table_name='uploads')
    op.drop_index('ix_uploads_owner_sha256', table_name='uploads')
    op.drop_table('uploads')
