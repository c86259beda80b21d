"""A batch's ids and statuses travel to PostgreSQL as array literals only when nothing in
them needs quoting; anything else goes as the list psycopg adapts."""

from __future__ import annotations

from datetime import UTC, datetime

from drip.sending.delivery import _array


def test_ids_counts_and_plain_words_become_literals() -> None:
    assert _array([3, 1, 2]) == "{3,1,2}"
    assert _array(["sending", "sending"]) == "{sending,sending}"


def test_what_an_array_literal_would_read_otherwise_stays_a_list() -> None:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    for values in (["null"], [""], ["a b"], ["Sent"], ["x,y"], [True, 1], [when], [1, "1"]):
        assert _array(values) == values, values
