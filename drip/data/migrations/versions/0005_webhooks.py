"""outgoing webhooks

Revision ID: 0005_webhooks
Revises: 0004_api
"""

from alembic import op
import sqlalchemy as sa
import drip.data.models


revision = '0005_webhooks'
down_revision = '0004_api'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('events', sa.String(length=300), nullable=False),
        sa.Column('secret', sa.String(length=100), nullable=False),
        sa.Column('created_at', drip.data.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('failing_since', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('last_success_at', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=False),
        sa.Column('disabled_at', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('disabled_reason', sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'webhook_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=60), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', drip.data.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('lease_until', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('delivered_at', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('endpoint_id', 'event_id', name='uq_webhook_messages_endpoint_event'),
    )
    op.create_index(
        'ix_webhook_messages_status_next', 'webhook_messages', ['status', 'next_attempt_at']
    )
    op.create_table(
        'webhook_cursor',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('micros', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.Integer(), nullable=False),
        sa.Column('row', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('webhook_cursor')
    op.drop_index('ix_webhook_messages_status_next', table_name='webhook_messages')
    op.drop_table('webhook_messages')
    op.drop_table('webhook_endpoints')
