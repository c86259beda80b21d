"""deliveries reach their subscriber through their enrollment: no second foreign key to check

Every delivery is made from its enrollment and copies the enrollment's
subscriber_id, and deliveries go with their enrollment (ON DELETE CASCADE),
which goes with its subscriber: deleting a subscriber still deletes their
deliveries. The dropped key cost PostgreSQL a row lock on the subscriber for
every delivery inserted, i.e. a write to the subscribers table for every email
of a daily send. SQLite checks keys in-process and would have to copy the
whole table to drop one, so it keeps it.

Revision ID: 0007_tick
Revises: 0006_speed
"""

from alembic import op
import sqlalchemy as sa


revision = '0007_tick'
down_revision = '0006_speed'
branch_labels = None
depends_on = None


def _subscriber_keys(bind: sa.engine.Connection) -> list[str]:
    return [
        key['name']
        for key in sa.inspect(bind).get_foreign_keys('deliveries')
        if key['constrained_columns'] == ['subscriber_id'] and key['name']
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    for name in _subscriber_keys(bind):
        op.drop_constraint(name, 'deliveries', type_='foreignkey')


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql' or _subscriber_keys(bind):
        return
    op.create_foreign_key(
        'deliveries_subscriber_id_fkey',
        'deliveries',
        'subscribers',
        ['subscriber_id'],
        ['id'],
        ondelete='CASCADE',
    )
