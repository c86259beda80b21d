"""The course content is written in the project's own words.

The lessons were built from the ideas and structure of a source article. These
tests make sure no lesson (and no string in course.toml) repeats a run of eight
or more consecutive words from that article, and that the lesson files keep the
shape the loader and the email layout rely on.

The article is not part of the repository. Point DRIP_ARTICLE_PATH at it, or
keep it at ../shared/seed/article.txt next to the repository. Without it the
originality check is skipped locally and fails in CI.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
COURSE_DIR = REPO_ROOT / "course"
LESSONS_DIR = COURSE_DIR / "lessons"
COURSE_TOML = COURSE_DIR / "course.toml"

SHINGLE = 8
MIN_BODY_WORDS = 350
MAX_BODY_WORDS = 700
MAX_SUBJECT_CHARS = 60
LESSON_COUNT = 10

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
    }
)
# A word is letters/digits, optionally joined by apostrophes inside the word
# ("don't", "husband's"). Everything else (punctuation, dashes, quotes,
# apostrophes at the edges) separates words.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_LESSON_NAME = re.compile(r"^(\d\d)-[a-z0-9]+(?:-[a-z0-9]+)*\.md$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*] |\d+\. )")


def tokenize(text: str) -> list[str]:
    """Lowercased words with curly quotes normalised and punctuation stripped."""
    return _WORD.findall(text.translate(_QUOTES).lower())


def shingles(words: list[str], size: int = SHINGLE) -> Iterator[tuple[str, ...]]:
    for i in range(len(words) - size + 1):
        yield tuple(words[i : i + size])


def split_front_matter(path: Path) -> tuple[dict, str]:
    """Return (front matter as a dict, markdown body) of a lesson file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].strip() == "+++", f"{path.name}: must start with a '+++' line"
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        pytest.fail(f"{path.name}: front matter is not closed by a second '+++' line")
    meta = tomllib.loads("\n".join(lines[1:end]))
    body = "\n".join(lines[end + 1 :])
    return meta, body


def lesson_files() -> list[Path]:
    return sorted(LESSONS_DIR.glob("*.md"))


def lesson_path(number: int) -> Path:
    matches = sorted(LESSONS_DIR.glob(f"{number:02d}-*.md"))
    assert len(matches) == 1, f"expected one lesson file {number:02d}-*.md, found {matches}"
    return matches[0]


def toml_strings(value: object, where: str = "course.toml") -> Iterator[tuple[str, str]]:
    """Every string value in a parsed TOML document, with a dotted location."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from toml_strings(
                item, f"{where} {key}" if where.endswith(".toml") else f"{where}.{key}"
            )
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from toml_strings(item, f"{where}[{index}]")


def texts_to_check() -> Iterator[tuple[str, str]]:
    """(label, text) for every piece of course copy a reader can see."""
    for path in lesson_files():
        meta, body = split_front_matter(path)
        for key, value in meta.items():
            if isinstance(value, str):
                yield f"{path.name} [{key}]", value
        yield f"{path.name} [body]", body
    if COURSE_TOML.exists():
        yield from toml_strings(tomllib.loads(COURSE_TOML.read_text(encoding="utf-8")))


def load_article_shingles() -> set[tuple[str, ...]]:
    configured = os.environ.get("DRIP_ARTICLE_PATH")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "seed" / "article.txt"
    if not path.is_file():
        reason = (
            f"source article not found at {path}; set DRIP_ARTICLE_PATH to check "
            "that the course does not copy it"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return set(shingles(tokenize(path.read_text(encoding="utf-8"))))


def test_tokenizer_normalises_quotes_case_and_punctuation() -> None:
    assert tokenize("Don\u2019t \u201cSTOP\u201d\u2014now, he's 'here'.") == [
        "don't",
        "stop",
        "now",
        "he's",
        "here",
    ]


def test_no_lesson_or_course_string_repeats_eight_words_of_the_article() -> None:
    article_shingles = load_article_shingles()
    copied = []
    checked = 0
    for label, text in texts_to_check():
        checked += 1
        for shingle in shingles(tokenize(text)):
            if shingle in article_shingles:
                copied.append(f"{label}: {' '.join(shingle)!r}")
    assert checked > LESSON_COUNT, "no course text found to check"
    assert not copied, "eight-word runs copied from the article:\n" + "\n".join(copied)


def test_exactly_ten_lessons_numbered_01_to_10() -> None:
    names = [path.name for path in lesson_files()]
    for name in names:
        assert _LESSON_NAME.match(name), f"{name}: expected NN-lowercase-slug.md"
    numbers = [name[:2] for name in names]
    assert numbers == [f"{n:02d}" for n in range(1, LESSON_COUNT + 1)], names


@pytest.mark.parametrize("number", range(1, LESSON_COUNT + 1))
def test_each_lesson_has_honest_subject_preheader_and_cta_lead(number: int) -> None:
    path = lesson_path(number)
    meta, _ = split_front_matter(path)
    for key in ("subject", "preheader", "cta_lead"):
        assert isinstance(meta.get(key), str), f"{path.name}: missing {key}"
        assert meta[key].strip(), f"{path.name}: empty {key}"
    subject, preheader = meta["subject"], meta["preheader"]
    assert subject.startswith(f"Day {number}:"), f"{path.name}: subject must start 'Day {number}:'"
    assert len(subject) <= MAX_SUBJECT_CHARS, f"{path.name}: subject is {len(subject)} chars"
    assert "!!!" not in subject and "$$" not in subject, f"{path.name}: spammy subject"
    assert "free" not in tokenize(subject), f"{path.name}: 'free' in subject"
    shouting = [w for w in re.findall(r"[A-Za-z]{2,}", subject) if w.isupper()]
    assert not shouting, f"{path.name}: ALL CAPS words in subject: {shouting}"
    assert 40 <= len(preheader) <= 110, f"{path.name}: preheader is {len(preheader)} chars"
    assert preheader.strip().lower() != subject.strip().lower(), f"{path.name}: preheader = subject"


@pytest.mark.parametrize("number", range(1, LESSON_COUNT + 1))
def test_each_lesson_body_is_350_to_700_words(number: int) -> None:
    path = lesson_path(number)
    _, body = split_front_matter(path)
    count = len(tokenize(body))
    assert MIN_BODY_WORDS <= count <= MAX_BODY_WORDS, f"{path.name}: body has {count} words"


@pytest.mark.parametrize("number", range(1, LESSON_COUNT + 1))
def test_each_lesson_has_at_most_one_list_and_a_today_step(number: int) -> None:
    path = lesson_path(number)
    _, body = split_front_matter(path)
    blocks = 0
    in_list = False
    for line in body.splitlines():
        is_item = bool(_LIST_ITEM.match(line))
        if is_item and not in_list:
            blocks += 1
        in_list = is_item
    assert blocks <= 1, f"{path.name}: {blocks} lists (at most one allowed)"
    assert "**Today:**" in body, f"{path.name}: no '**Today:**' paragraph"


@pytest.mark.parametrize("number", range(1, LESSON_COUNT + 1))
def test_each_lesson_is_plain_markdown_without_layout_parts(number: int) -> None:
    path = lesson_path(number)
    _, body = split_front_matter(path)
    for line in body.splitlines():
        assert not re.match(r"^#{1,2}\s", line), f"{path.name}: heading above level 3: {line!r}"
    assert "![" not in body, f"{path.name}: images are not allowed"
    assert not re.search(r"</?[A-Za-z][^>]*>", body), f"{path.name}: raw HTML is not allowed"
    for url in re.findall(r"\]\(([^)\s]+)", body):
        assert url.startswith("https://"), f"{path.name}: link is not absolute https: {url}"
    first = body.strip().splitlines()[0].lower()
    assert not re.match(r"^(hi|hello|dear|hey)\b", first), f"{path.name}: greeting in lesson"


def test_first_lesson_points_people_in_danger_to_real_help() -> None:
    path = lesson_path(1)
    _, body = split_front_matter(path)
    lowered = body.lower()
    assert "emergency" in lowered, "lesson 1 must point to emergency services"
    assert "hotline" in lowered, "lesson 1 must point to a domestic-violence hotline"
    assert "not therapy" in lowered, "lesson 1 must say the course is not therapy"


def test_course_toml_has_ten_covers_and_a_commission_disclosure() -> None:
    course = tomllib.loads(COURSE_TOML.read_text(encoding="utf-8"))
    assert len(course["landing"]["covers"]) == LESSON_COUNT
    assert "commission" in course["cta"]["disclosure"].lower()
    assert "commission" in course["landing"]["consent"].lower()
    assert course["cta"]["url"].startswith("https://")
    care = course["footer"]["care_note"].lower()
    assert "emergency" in care and "hotline" in care
