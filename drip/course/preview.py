"""Render every lesson of a course to files a person can open: NN.html, NN.txt, NN.eml.

The .eml is the whole message as a mailbox would receive it, with the
List-Unsubscribe headers, so it can be opened in a mail client or linted.
"""

from __future__ import annotations

from pathlib import Path

from drip.course import render
from drip.course.model import Course
from drip.mail.mime import build_message

SAMPLE_NAME = "Alex"
SAMPLE_EMAIL = "alex@example.com"


def write_preview(course: Course, out_dir: Path, base_url: str) -> list[Path]:
    """Write three files per lesson into ``out_dir``; return their paths in lesson order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = sample_values(course, base_url)
    written: list[Path] = []
    for lesson in course.lessons:
        rendered = render.render_lesson(course, lesson, base_url)
        written += _write_one(out_dir / f"{lesson.number:02d}", course, rendered, values)
    return written


def sample_values(course: Course, base_url: str) -> dict[str, str]:
    """Personal values for a preview. The CTA goes straight to the product page:
    a preview has no delivery to track, and a dead /r/ link would help nobody."""
    base = base_url.rstrip("/")
    return render.personal_values(
        first_name=SAMPLE_NAME,
        unsubscribe_url=f"{base}/u/preview",
        cta_url=course.cta.url,
    )


def _write_one(
    stem: Path, course: Course, rendered: render.RenderedEmail, values: dict[str, str]
) -> list[Path]:
    html, text = render.personalize(rendered, values)
    message = build_message(
        from_email=course.sender_email,
        from_name=course.sender_name,
        to_email=SAMPLE_EMAIL,
        to_name=SAMPLE_NAME,
        subject=rendered.subject,
        html=html,
        text=text,
        reply_to=course.reply_to,
        # RFC 8058 one-click unsubscribe.
        headers={
            "List-Unsubscribe": f"<{values[render.UNSUBSCRIBE_URL]}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    paths = [stem.with_suffix(".html"), stem.with_suffix(".txt"), stem.with_suffix(".eml")]
    paths[0].write_text(html, encoding="utf-8")
    paths[1].write_text(text, encoding="utf-8")
    paths[2].write_bytes(message)
    return paths
