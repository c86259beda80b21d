"""Writing a course preview to files (drip.course.preview)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from drip.course.loader import load_course
from drip.course.preview import write_preview

FIXTURES = Path(__file__).parent / "course_fixtures"


@pytest.mark.parametrize("directory, count", [("sample", 4), ("three-day", 3)])
def test_it_writes_html_text_and_eml_for_every_lesson(
    directory: str, count: int, tmp_path: Path
) -> None:
    course = load_course(FIXTURES / directory)
    out = tmp_path / "preview"

    written = write_preview(course, out, "https://drip.example/")

    expected = [
        out / f"{n:02d}.{ext}" for n in range(1, count + 1) for ext in ("html", "txt", "eml")
    ]
    assert written == expected
    assert all(path.is_file() and path.stat().st_size > 0 for path in written)


def test_preview_files_are_personalized_with_sample_values(tmp_path: Path) -> None:
    course = load_course(FIXTURES / "sample")

    write_preview(course, tmp_path, "https://drip.example")

    html = (tmp_path / "01.html").read_text(encoding="utf-8")
    text = (tmp_path / "01.txt").read_text(encoding="utf-8")
    assert "Hi Alex," in html
    assert text.startswith("Hi Alex,\n")
    assert "%%drip_" not in html + text
    assert 'href="https://drip.example/u/preview"' in html
    assert f"{course.cta.text}: {course.cta.url}" in text


def test_eml_parses_and_carries_one_click_unsubscribe_headers(tmp_path: Path) -> None:
    course = load_course(FIXTURES / "sample")

    write_preview(course, tmp_path, "https://drip.example")

    raw = (tmp_path / "02.eml").read_bytes()
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == course.lesson(2).subject
    assert message["From"] == "Fern at Houseplants <lessons@houseplants.example>"
    assert message["Reply-To"] == "hello@houseplants.example"
    assert message["List-Unsubscribe"] == "<https://drip.example/u/preview>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    assert course.cta.disclosure in html_part.get_content()
