"""The shape of the project itself: what the wheel ships, and comments that stand alone."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Documents outside the repository; a comment or doc must state the fact, not point there.
OUTSIDE_DOCUMENTS = re.compile(r"\b(FACTS|DESIGN|STYLE)\b")
MAX_TOP_LEVEL_MODULES = 15


def test_the_wheel_ships_drip_with_its_templates_and_migrations_and_no_development_tools(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("drip-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if "sink" in name or "devtools" in name]
    assert "drip/templates/email/layout.html" in names
    assert "drip/data/migrations/versions/0001_initial_schema.py" in names


def test_no_tracked_file_points_at_documents_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    citing = [
        path
        for path in tracked
        if (ROOT / path).is_file()
        and OUTSIDE_DOCUMENTS.search((ROOT / path).read_text(encoding="utf-8", errors="ignore"))
        and path != "tests/test_project_layout.py"
    ]
    assert citing == []


def test_at_most_fifteen_modules_sit_directly_in_the_package() -> None:
    top = [path for path in (ROOT / "drip").iterdir() if path.suffix == ".py"]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(path.name for path in top)
