"""accounts: users, api_keys, share_links, and jobs.owner_id

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 17:40:00.000000

`jobs.owner_id` is added in place (no batch rebuild), so the triggers of 0004 on `jobs`
stay; on SQLite the column carries no foreign-key constraint (ALTER TABLE cannot add one),
elsewhere it does. Jobs made before accounts keep a NULL owner until the first
administrator takes them over (`webapp.accounts.adopt_ownerless_jobs`).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'users',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=False),
        sa.Column('is_admin', sa.Boolean(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('daily_quota', sa.Integer(), nullable=True),
        sa.Column('session_epoch', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'api_keys',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_hash'),
    )
    op.create_index('ix_api_keys_user_id', 'api_keys', ['user_id'])
    op.create_index('ix_api_keys_prefix', 'api_keys', ['prefix'])
    op.create_table(
        'share_links',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_share_links_job_id', 'share_links', ['job_id'])
    op.create_index('ix_share_links_user_id', 'share_links', ['user_id'])
    op.add_column('jobs', sa.Column('owner_id', sa.String(length=36), nullable=True))
    if op.get_bind().dialect.name != 'sqlite':
        op.create_foreign_key('fk_jobs_owner_id_users', 'jobs', 'users', ['owner_id'], ['id'])
    op.create_index('ix_jobs_owner_created_at', 'jobs', ['owner_id', 'created_at', 'id'])
    op.create_index(
        'ix_jobs_owner_status_created_at', 'jobs', ['owner_id', 'status', 'created_at', 'id']
    )


def downgrade():
    op.drop_index('ix_jobs_owner_status_created_at', table_name='jobs')
    op.drop_index('ix_jobs_owner_created_at', table_name='jobs')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('fk_jobs_owner_id_users', 'jobs', type_='foreignkey')
    op.drop_column('jobs', 'owner_id')
    op.drop_table('share_links')
    op.drop_table('api_keys')
    op.drop_table('users')
