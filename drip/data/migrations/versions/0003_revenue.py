"""revenue: click refs handed to affiliate networks, and the conversions they report

Revision ID: 0003_revenue
Revises: 0002_consent_lifts_suppression
"""

import sqlalchemy as sa
from alembic import op

import drip.data.models

revision = '0003_revenue'
down_revision = '0002_consent_lifts_suppression'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ref', sa.String(length=24), nullable=True))
        batch_op.create_unique_constraint('uq_clicks_ref', ['ref'])
    op.create_table(
        'conversions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('external_id', sa.String(length=100), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('occurred_at', drip.data.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('received_at', drip.data.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('click_id', sa.Integer(), nullable=True),
        sa.Column('subscriber_id', sa.Integer(), nullable=True),
        sa.Column('lesson', sa.Integer(), nullable=True),
        sa.Column('signup_week', sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(['click_id'], ['clicks.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'external_id', 'kind', name='uq_conversions_source_id_kind'),
    )
    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.create_index('ix_conversions_click_id', ['click_id'], unique=False)
        batch_op.create_index('ix_conversions_subscriber_id', ['subscriber_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.drop_index('ix_conversions_subscriber_id')
        batch_op.drop_index('ix_conversions_click_id')
    op.drop_table('conversions')
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_constraint('uq_clicks_ref', type_='unique')
        batch_op.drop_column('ref')
