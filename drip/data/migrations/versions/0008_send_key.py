"""deliveries go with their enrollment by a trigger, not a foreign key checked per insert

The tick inserts a morning's deliveries from enrollments it holds locked
(FOR UPDATE), so the enrollment of a new delivery exists and cannot go before
the insert commits. Checking the key anyway cost PostgreSQL a lookup and a
row lock on the enrollment for every delivery: 18-22 ms of the 106-167 ms a
chunk of 5,000 took (EXPLAIN ANALYZE, two runs). A delivery still goes with
its enrollment: a trigger deletes an enrollment's deliveries with it, as ON
DELETE CASCADE did, so deleting a subscriber still deletes their deliveries.
A TRUNCATE fires no delete trigger: emptying enrollments that way must name
deliveries too. SQLite checks keys in-process and would have to copy the
whole table to drop one, so it keeps it.

Revision ID: 0008_send_key
Revises: 0007_tick
"""

from alembic import op
import sqlalchemy as sa


revision = '0008_send_key'
down_revision = '0007_tick'
branch_labels = None
depends_on = None

_TRIGGER = 'enrollments_take_their_deliveries'
_FUNCTION = 'drip_delete_enrollment_deliveries'


def _enrollment_keys(bind: sa.engine.Connection) -> list[str]:
    return [
        key['name']
        for key in sa.inspect(bind).get_foreign_keys('deliveries')
        if key['constrained_columns'] == ['enrollment_id'] and key['name']
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    # The trigger first: no moment in which an enrollment could go without its deliveries.
    op.execute(
        f"""
        CREATE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM deliveries WHERE enrollment_id = OLD.id;
            RETURN OLD;
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {_TRIGGER} AFTER DELETE ON enrollments"
        f" FOR EACH ROW EXECUTE FUNCTION {_FUNCTION}()"
    )
    for name in _enrollment_keys(bind):
        op.drop_constraint(name, 'deliveries', type_='foreignkey')


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    if not _enrollment_keys(bind):
        op.create_foreign_key(
            'deliveries_enrollment_id_fkey',
            'deliveries',
            'enrollments',
            ['enrollment_id'],
            ['id'],
            ondelete='CASCADE',
        )
    op.execute(f'DROP TRIGGER IF EXISTS {_TRIGGER} ON enrollments')
    op.execute(f'DROP FUNCTION IF EXISTS {_FUNCTION}()')
