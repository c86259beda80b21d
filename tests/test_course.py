"""Loading and checking a course directory (drip.course.loader)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from drip.course.loader import check_course, load_course
from drip.course.model import CourseError, Problem

FIXTURES = Path(__file__).parent / "course_fixtures"
SAMPLE = FIXTURES / "sample"
REAL_COURSE = Path(__file__).resolve().parent.parent / "course"


def test_it_loads_the_sample_course() -> None:
    course = load_course(SAMPLE)

    assert course.slug == "houseplants"
    assert course.send_hour == 8
    assert course.sender_email == "lessons@houseplants.example"
    assert course.reply_to == "hello@houseplants.example"
    assert course.cta.url == "https://affiliate.example/leaf-guide?ref=drip&campaign=course"
    assert course.landing.covers[2] == "Day 3: soil & pots"
    assert [lesson.number for lesson in course.lessons] == [1, 2, 3, 4]
    slugs = [lesson.slug for lesson in course.lessons]
    assert slugs == ["light", "water", "soil-and-pots", "pests"]
    assert course.lessons[0].cta_lead.startswith("The Leaf Guide has")
    assert course.lessons[1].cta_lead == ""
    assert course.lessons[0].body_markdown.startswith("Most houseplants")
    assert course.directory == SAMPLE


def test_sample_course_checks_clean() -> None:
    assert check_course(SAMPLE) == []


def test_a_three_lesson_course_loads_and_checks_clean() -> None:
    course = load_course(FIXTURES / "three-day")

    assert len(course.lessons) == 3
    assert course.sender_name == "Jürgen Bäcker"
    assert course.lesson(3).subject == "Tag 3: Backen"
    assert check_course(FIXTURES / "three-day") == []


def test_lesson_lookup_names_the_missing_number() -> None:
    course = load_course(SAMPLE)

    assert course.lesson(2).slug == "water"
    with pytest.raises(LookupError, match=r"no lesson 5: it has lessons 1\.\.4"):
        course.lesson(5)


def test_consent_version_changes_with_the_consent_text(tmp_path: Path) -> None:
    course = load_course(SAMPLE)
    edited = _copy_sample(tmp_path)
    _edit(edited / "course.toml", 'consent = "Send me', 'consent = "Please send me')

    assert len(course.consent_version) == 16
    assert int(course.consent_version, 16) >= 0
    assert load_course(edited).consent_version != course.consent_version


def test_affiliate_url_overrides_the_course_file() -> None:
    course = load_course(SAMPLE, affiliate_url="https://partner.example/other?id=7")

    assert course.cta.url == "https://partner.example/other?id=7"


def test_an_http_affiliate_url_is_refused() -> None:
    with pytest.raises(CourseError) as caught:
        load_course(SAMPLE, affiliate_url="http://partner.example/other")

    assert str(caught.value) == (
        "DRIP_AFFILIATE_URL: 'http://partner.example/other' is not an absolute https:// URL:"
        " fix or unset it"
    )


def test_broken_course_lists_every_problem_in_file_order() -> None:
    broken = FIXTURES / "broken"

    lines = [str(problem).replace(f"{broken}/", "") for problem in check_course(broken)]

    assert lines == [
        "course.toml:5: send_hour is 25: use a local hour from 0 to 23",
        'course.toml:11: missing key "footer.postal_address": add it under [footer]',
        'course.toml:18: cta.url "http://affiliate.example/nothing" must be an absolute'
        " https:// URL",
        "lessons: lesson 02 is missing: number 01..03",
        "lessons/01-start.md:2: subject is 68 characters: keep it to 60",
        'lessons/01-start.md:3: "preheader" is empty',
        'lessons/01-start.md:5: relative link "notes.html": write the full https:// address',
        'lessons/01-start.md:5: link "http://old.example/" uses http:, only https:// links'
        " (and mailto:) are allowed",
        'lessons/01-start.md:7: link "javascript:alert(1)" uses javascript:, only https://'
        " links (and mailto:) are allowed",
        'lessons/03-end.md:1: missing front matter: start the file with a line "+++", the keys,'
        ' then "+++"',
        "lessons/4-late.md: not a lesson file name: use NN-slug.md, e.g. 01-first-step.md",
    ]


def test_load_course_raises_with_one_line_per_problem() -> None:
    with pytest.raises(CourseError) as caught:
        load_course(FIXTURES / "broken")

    assert len(caught.value.problems) == 11
    assert str(caught.value).splitlines() == [str(problem) for problem in caught.value.problems]


def test_problem_without_a_line_prints_path_and_message() -> None:
    assert str(Problem("course/lessons", None, "no lessons")) == "course/lessons: no lessons"
    assert str(Problem("course/course.toml", 3, "bad")) == "course/course.toml:3: bad"


def _copy_sample(tmp_path: Path) -> Path:
    target = tmp_path / "course"
    shutil.copytree(SAMPLE, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture changed: {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


LESSON_2 = "lessons/02-water.md"
LESSON_2_FRONT = '+++\nsubject = "Day 2: Water less, but deeper"\npreheader = "The finger test beats any schedule."\n+++\n'  # noqa: E501


def _body(text: str) -> Callable[[Path], None]:
    """An edit that appends Markdown to the body of lesson 2 (its body starts at line 5)."""

    def edit(course: Path) -> None:
        path = course / LESSON_2
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    return edit


def _replace(file: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda course: _edit(course / file, old, new)


def _write(file: str, text: str) -> Callable[[Path], None]:
    def edit(course: Path) -> None:
        (course / file).write_text(text, encoding="utf-8")

    return edit


def _delete(file: str) -> Callable[[Path], None]:
    return lambda course: (course / file).unlink()


# (edit, file the problem names, its line or None, words the message contains)
ONE_PROBLEM_CASES = {
    "missing top-level key": (
        _replace("course.toml", 'title = "Keep Your Houseplants Alive"\n', ""),
        "course.toml",
        None,
        'missing key "title": add it at the top of the file',
    ),
    "string where a number belongs": (
        _replace("course.toml", "send_hour = 8", 'send_hour = "8"'),
        "course.toml",
        6,
        "\"send_hour\" must be a whole number, not '8'",
    ),
    "send_hour out of range": (
        _replace("course.toml", "send_hour = 8", "send_hour = 24"),
        "course.toml",
        6,
        "send_hour is 24: use a local hour from 0 to 23",
    ),
    "missing key in a table": (
        _replace(
            "course.toml",
            'postal_address = "Houseplants Course, 12 Garden Row, Springfield, OR 97477, USA"\n',
            "",
        ),
        "course.toml",
        13,
        'missing key "footer.postal_address": add it under [footer]',
    ),
    "unknown key": (
        _replace("course.toml", "send_hour = 8", "send_hour = 8\nsend_minute = 5"),
        "course.toml",
        7,
        'unknown key "send_minute": check its spelling',
    ),
    "missing table": (
        _replace(
            "course.toml",
            '[sender]\nname = "Fern at Houseplants"\nemail = "lessons@houseplants.example"\n'
            'reply_to = "hello@houseplants.example"\n',
            "",
        ),
        "course.toml",
        None,
        "missing table [sender]: add it with its keys",
    ),
    "list of the wrong type": (
        _replace("course.toml", '  "Day 4: pests",\n', "  4,\n"),
        "course.toml",
        28,
        '"landing.covers" must be a non-empty list of non-empty strings',
    ),
    "invalid TOML": (
        _replace("course.toml", 'language = "en"', "language = en"),
        "course.toml",
        5,
        "invalid TOML: Invalid value",
    ),
    "bad sender address": (
        _replace("course.toml", 'email = "lessons@houseplants.example"', 'email = "lessons"'),
        "course.toml",
        10,
        'sender.email "lessons" is not an email address',
    ),
    "http cta url": (
        _replace("course.toml", 'url = "https://affiliate', 'url = "http://affiliate'),
        "course.toml",
        21,
        'cta.url "http://affiliate.example/leaf-guide?ref=drip&campaign=course" must be an'
        " absolute https:// URL",
    ),
    "covers do not match the lessons": (
        _replace("course.toml", '  "Day 4: pests",\n', ""),
        "course.toml",
        28,
        "landing.covers has 3 lines for 4 lessons: one per lesson",
    ),
    "missing course.toml": (_delete("course.toml"), "course.toml", None, "file is missing"),
    "gap in the numbering": (
        _delete("lessons/03-soil-and-pots.md"),
        "lessons",
        None,
        "lesson 03 is missing: number 01..04",
    ),
    "duplicate number": (
        _write("lessons/02-again.md", LESSON_2_FRONT + "Again.\n"),
        LESSON_2,
        None,
        "lesson number 02 is also used by 02-again.md",
    ),
    "bad file name": (
        _write("lessons/5-extra.md", LESSON_2_FRONT + "Extra.\n"),
        "lessons/5-extra.md",
        None,
        "not a lesson file name: use NN-slug.md",
    ),
    "number zero": (
        _write("lessons/00-intro.md", LESSON_2_FRONT + "Intro.\n"),
        "lessons/00-intro.md",
        None,
        "lesson numbers start at 01",
    ),
    "missing front matter": (
        _write(LESSON_2, "Just a body.\n"),
        LESSON_2,
        1,
        'missing front matter: start the file with a line "+++"',
    ),
    "front matter not closed": (
        _write(LESSON_2, '+++\nsubject = "x"\npreheader = "y"\nBody.\n'),
        LESSON_2,
        1,
        'front matter is not closed: add a line "+++" after it',
    ),
    "invalid TOML in front matter": (
        _replace(LESSON_2, 'preheader = "The', "preheader = The"),
        LESSON_2,
        3,
        "invalid TOML: Invalid value",
    ),
    "missing subject": (
        _replace(LESSON_2, 'subject = "Day 2: Water less, but deeper"\n', ""),
        LESSON_2,
        1,
        'missing key "subject": add it at the top of the file',
    ),
    "empty subject": (
        _replace(LESSON_2, 'subject = "Day 2: Water less, but deeper"', 'subject = "  "'),
        LESSON_2,
        2,
        '"subject" is empty',
    ),
    "subject too long": (
        _replace(LESSON_2, "Water less, but deeper", "Water less, but deeper, " + "x" * 40),
        LESSON_2,
        2,
        "subject is 71 characters: keep it to 60",
    ),
    "empty preheader": (
        _replace(LESSON_2, 'preheader = "The finger test beats any schedule."', 'preheader = ""'),
        LESSON_2,
        3,
        '"preheader" is empty',
    ),
    "unknown front matter key": (
        _replace(LESSON_2, "+++\nOverwatering", 'cta_leed = "typo"\n+++\nOverwatering'),
        LESSON_2,
        4,
        'unknown key "cta_leed": check its spelling',
    ),
    "empty body": (
        _write(LESSON_2, LESSON_2_FRONT + "\n"),
        LESSON_2,
        5,
        "the lesson body is empty",
    ),
    "relative link": (
        _body("\nSee [the notes](notes/water.html).\n"),
        LESSON_2,
        15,
        'relative link "notes/water.html": write the full https:// address',
    ),
    "http link": (
        _body("\nSee [the notes](http://extension.example/water).\n"),
        LESSON_2,
        15,
        'link "http://extension.example/water" uses http:',
    ),
    "javascript link": (
        _body("\nDo not [click](javascript:alert(1)).\n"),
        LESSON_2,
        15,
        'link "javascript:alert(1)" uses javascript:',
    ),
    "http image": (
        _body("\n![a fern](http://img.example/fern.png)\n"),
        LESSON_2,
        15,
        'link "http://img.example/fern.png" uses http:',
    ),
    "template syntax in a lesson": (
        _body("\nHello {{ first_name }}!\n"),
        LESSON_2,
        None,
        'unresolved template syntax "{{" in the email: lessons are plain Markdown',
    ),
    "a placeholder in a lesson": (
        _body("\nYour code: %%drip_coupon%%\n"),
        LESSON_2,
        None,
        'unresolved template syntax "%%drip_"',
    ),
    "HTML too large for Gmail": (
        _body("\n" + "A plant needs light and water and patience. " * 2500 + "\n"),
        LESSON_2,
        None,
        "bytes: keep it under 100000 (Gmail clips)",
    ),
}


@pytest.mark.parametrize("case", ONE_PROBLEM_CASES.values(), ids=ONE_PROBLEM_CASES.keys())
def test_each_mistake_is_one_clear_problem(
    case: tuple[Callable[[Path], None], str, int | None, str], tmp_path: Path
) -> None:
    edit, file, line, words = case
    course = _copy_sample(tmp_path)
    edit(course)

    problems = check_course(course)

    assert len(problems) == 1, "\n".join(map(str, problems))
    where = f"{course / file}:{line}: " if line else f"{course / file}: "
    assert str(problems[0]).startswith(where)
    assert words in problems[0].message


def test_mailto_and_https_links_are_fine(tmp_path: Path) -> None:
    course = _copy_sample(tmp_path)
    _body("\n[Mail us](mailto:a@houseplants.example) or <https://houseplants.example/faq>.\n")(
        course
    )

    assert check_course(course) == []


def test_a_missing_lessons_directory_is_one_problem(tmp_path: Path) -> None:
    course = _copy_sample(tmp_path)
    shutil.rmtree(course / "lessons")

    assert [str(problem) for problem in check_course(course)] == [
        f"{course}/lessons: missing: add lessons/01-<slug>.md and on"
    ]


def test_an_empty_lessons_directory_is_one_problem(tmp_path: Path) -> None:
    course = _copy_sample(tmp_path)
    for lesson in (course / "lessons").iterdir():
        lesson.unlink()

    assert [str(problem) for problem in check_course(course)] == [
        f"{course}/lessons: no lessons: add lessons/01-<slug>.md"
    ]


def _real_course_has_lessons() -> bool:
    return any((REAL_COURSE / "lessons").glob("*.md"))


@pytest.mark.skipif(
    not _real_course_has_lessons(), reason="course/lessons has no lessons yet (being written)"
)
def test_the_real_course_checks_clean() -> None:
    problems = check_course(REAL_COURSE)

    assert problems == [], "\n".join(map(str, problems))


SAMPLE_CARE_NOTE = (
    'care_note = "If a plant is beyond saving, that is not your fault: some are just fussy."'
)


@pytest.mark.parametrize(
    ("care_note_line", "expected"),
    [
        ("", '13: missing key "footer.care_note": add it under [footer]'),
        ('care_note = "  "', '15: "footer.care_note" is empty'),
    ],
    ids=["missing", "blank"],
)
def test_drip_course_check_fails_a_course_without_a_care_note(
    tmp_path: Path, care_note_line: str, expected: str
) -> None:
    from click.testing import CliRunner

    from drip.cli import main

    course = _copy_sample(tmp_path)
    _edit(course / "course.toml", SAMPLE_CARE_NOTE, care_note_line)

    result = CliRunner().invoke(
        main, ["course", "check", str(course)], env={"DRIP_VAR_DIR": str(tmp_path / "var")}
    )

    assert result.exit_code == 1
    assert result.output == f"{course}/course.toml:{expected}\n"
