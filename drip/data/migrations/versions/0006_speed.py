"""consents carry their confirmation email's due time: the table is the queue

Revision ID: 0006_speed
Revises: 0005_webhooks
"""

from alembic import op
import sqlalchemy as sa
import drip.data.models


revision = '0006_speed'
down_revision = '0005_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('confirmation_due_at', drip.data.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            'ix_consents_confirmation_due',
            ['confirmation_due_at'],
            unique=False,
            postgresql_where=sa.text('confirmation_due_at IS NOT NULL'),
            sqlite_where=sa.text('confirmation_due_at IS NOT NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index('ix_consents_confirmation_due')
        batch_op.drop_column('confirmation_due_at')
