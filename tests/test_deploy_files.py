"""The deployment files, checked in seconds: docker-compose.yml against the compose
specification, the Dockerfile with hadolint, and .env.example against what compose needs.

`make stack` proves the same files by building and running them (docs/deploy.md); these
checks catch a typo or an undocumented variable before anyone gets that far.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "stack" / "compose.stack.yml"]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    # Both come with the dev extra; a missing one is a broken install, never a skip.
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[dev]'"
    return found


def check_compose(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=120)


def hadolint(dockerfile: Path, config: Path) -> list[dict[str, object]]:
    answer = subprocess.run(
        [tool("hadolint"), "--config", str(config), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.stdout.strip(), f"hadolint said nothing: {answer.stderr}"
    findings: list[dict[str, object]] = json.loads(answer.stdout)
    return findings


def test_the_compose_files_follow_the_compose_specification() -> None:
    answer = check_compose(*COMPOSE_FILES)
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_the_compose_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "    healthcheck:\n" in text
    planted = tmp_path / "docker-compose.yml"
    planted.write_text(text.replace("    healthcheck:\n", "    healthchek:\n", 1))
    answer = check_compose(planted)
    assert answer.returncode != 0
    assert "healthchek" in answer.stdout + answer.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    findings = hadolint(ROOT / "Dockerfile", ROOT / ".hadolint.yaml")
    assert findings == [], "fix these, or ignore them in .hadolint.yaml with a reason"


def ignored_rules() -> dict[str, str]:
    """Each rule .hadolint.yaml ignores, with the comment just above it."""
    rules: dict[str, str] = {}
    comment: list[str] = []
    for line in (ROOT / ".hadolint.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
        elif match := re.fullmatch(r"- (DL\d{4}|SC\d{4})", stripped):
            rules[match.group(1)] = " ".join(comment)
            comment = []
        else:
            comment = []
    return rules


def test_every_ignored_hadolint_rule_is_justified_and_still_needed(tmp_path: Path) -> None:
    rules = ignored_rules()
    for rule, reason in rules.items():
        assert len(reason) > 40, f"{rule} is ignored without a reason in .hadolint.yaml"
    no_config = tmp_path / "hadolint.yaml"
    no_config.write_text("{}\n")
    found = {str(f["code"]) for f in hadolint(ROOT / "Dockerfile", no_config)}
    assert found == set(rules), "a rule is ignored that the Dockerfile no longer breaks"


def interpolated(text: str) -> set[str]:
    """The variables a compose file takes from the environment (or .env): ${NAME...}."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def documented() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {m.group(1) for line in lines if (m := re.match(r"([A-Z][A-Z0-9_]*)=", line))}


def test_interpolated_finds_required_optional_and_escaped_variables() -> None:
    text = "a: ${ONE:?set ONE}\nb: ${TWO:-x}\nc: ${THREE}\nd: $${NOT_ONE}\n"
    assert interpolated(text) == {"ONE", "TWO", "THREE"}


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda p: p.name)
def test_env_example_names_every_variable_the_compose_file_needs(compose_file: Path) -> None:
    text = compose_file.read_text()
    needed = interpolated(text)
    # drip's own settings given to the services are drip variables too: document them.
    needed |= set(re.findall(r"^\s+(DRIP_[A-Z0-9_]+):", text, flags=re.MULTILINE))
    assert needed, "the check found no variable at all: is the pattern still right?"
    missing = sorted(needed - documented())
    assert not missing, f"{compose_file.name} needs {missing}: document them in .env.example"


def test_the_compose_file_requires_every_shared_secret() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("POSTGRES_PASSWORD", "DRIP_SECRET_KEY", "FLOWER_USER", "FLOWER_PASSWORD"):
        assert f"${{{name}:?" in text, f"docker-compose.yml must refuse to start without {name}"
