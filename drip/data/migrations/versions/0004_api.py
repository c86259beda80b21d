"""api keys

Revision ID: 0004_api
Revises: 0003_revenue
"""

from alembic import op
import sqlalchemy as sa
import drip.data.models


revision = '0004_api'
down_revision = '0003_revenue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', drip.data.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', drip.data.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('prefix'),
    )


def downgrade() -> None:
    op.drop_table('api_keys')
