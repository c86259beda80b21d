"""The engine assumes neither ten lessons nor one course: a three-day course runs end to end."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from drip.cli import main
from drip.data.models import Enrollment
from tests.conftest import ROOT, Stack, drain, sign_up, wait_until
from tests.mailbox import messages
from tests.test_walk import confirm_from_outbox

THREE_DAY = ROOT / "tests" / "course_fixtures" / "three-day"


@pytest.fixture()
def three_day(stack_factory: Callable[..., Stack]) -> Stack:
    from tests.conftest import clear_tables

    stack = stack_factory(course_dir=THREE_DAY)
    clear_tables(stack.services.database)
    for path in stack.outbox.glob("*.eml") if stack.outbox.exists() else []:
        path.unlink()
    return stack


def test_drip_course_check_passes_a_course_of_another_length() -> None:
    result = CliRunner().invoke(main, ["course", "check", str(THREE_DAY)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_a_three_lesson_course_sends_three_lessons_and_completes(three_day: Stack) -> None:
    stack = three_day
    assert [lesson.number for lesson in stack.services.course.lessons] == [1, 2, 3]
    email = "bäcker@example.com"
    sign_up(stack, email, timezone="Europe/Berlin", name="Jörg")
    confirm_from_outbox(stack, email)
    wait_until(lambda: len(messages(stack.outbox, to=email)) == 2)
    for _ in range(24 * 5):
        stack.clock.advance(hours=1)
        if stack.tick().dispatched:
            drain(stack)
    lessons = messages(stack.outbox, to=email)[1:]
    assert len(lessons) == 3
    assert str(lessons[0]["From"]).startswith("Jürgen Bäcker")
    berlin = ZoneInfo("Europe/Berlin")
    with stack.session() as session:
        enrollment = session.scalars(select(Enrollment)).one()
        assert enrollment.status == "completed"
        assert enrollment.next_due_at is None
        from drip.data.models import Delivery

        due = session.scalars(select(Delivery.due_at).order_by(Delivery.lesson)).all()
    assert [d.astimezone(berlin).hour for d in due[1:]] == [7, 7], "the course's own send hour"
