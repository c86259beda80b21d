"""The shape of the project itself: what the wheel ships, and comments that stand alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Documents outside the repository; a comment or doc must state the fact, not point there.
# Spelled in pieces so that this file does not name them itself.
OUTSIDE_DOCUMENTS = re.compile(
    r"\b(" + "|".join(["FAC" + "TS", "DES" + "IGN", "STY" + "LE"]) + r")\b"
)
MAX_TOP_LEVEL_MODULES = 15


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [path for path in listed if (ROOT / path).is_file()]


def test_the_wheel_ships_drip_with_its_templates_and_migrations_and_no_development_tools(
    tmp_path: Path,
) -> None:
    # From a copy of what git tracks: a stale build/ folder in the checkout must not leak in.
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    for path in tracked_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run([*pip_wheel, str(source), "-w", str(wheels)], check=True, timeout=300)
    [wheel] = wheels.glob("drip-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if "sink" in name or "devtools" in name]
    assert "drip/templates/email/layout.html" in names
    assert "drip/data/migrations/versions/0001_initial_schema.py" in names


def test_no_tracked_file_points_at_documents_outside_the_repository() -> None:
    citing = [
        path
        for path in tracked_files()
        if OUTSIDE_DOCUMENTS.search((ROOT / path).read_text(encoding="utf-8", errors="ignore"))
    ]
    assert citing == []


def test_at_most_fifteen_modules_sit_directly_in_the_package() -> None:
    top = [path for path in (ROOT / "drip").iterdir() if path.suffix == ".py"]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(path.name for path in top)
