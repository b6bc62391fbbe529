"""drop webhook_attempts.redelivery, a column nothing ever wrote

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:30:00.000000

Every row holds the default (false): a redelivery is told by the event's attempt count and
times, not by a flag. On SQLite the batch rebuilds only `webhook_attempts`; the triggers of
0004 live on `jobs` and are untouched.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.drop_column('redelivery')


def downgrade():
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('redelivery', sa.Boolean(), nullable=False, server_default=sa.false())
        )
