"""`drip check` and the start-up gate: no real mail with the shipped placeholders.

The shipped course has an example.com sender, an "Example Street" postal address and
the product's homepage as its link. With the outbox, or SendGrid aimed at a local
stand-in, that is development: warnings. With SendGrid's own API it is refused.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from drip.app import create_app
from drip.cli import main
from drip.cli.embedded_redis import free_port
from drip.config import ConfigError, load_settings
from drip.course.loader import load_course
from drip.ops.readiness import SHIPPED_POSTAL_ADDRESS, NotReady
from tests.conftest import COURSE_DIR, ROOT, make_settings

REAL_SENDGRID = "https://api.sendgrid.com"
# Everything `drip check` looks at, set as an operator going live would set it.
COMPLETE = {
    "DRIP_BASE_URL": "https://courses.gentle-mail.co",
    "DRIP_SECRET_KEY": "q8Zr2mVx7LwP4nKs9TbY3hJd6FgC1aXe5uRo0iWl",
    "DRIP_AFFILIATE_URL": "https://www.savethemarriage.com/?aff=gentle42",
    "DRIP_SENDGRID_WEBHOOK_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-placeholder-for-check",
    "DRIP_SENDER_NAME": "Gentle Mail",
    "DRIP_SENDER_EMAIL": "lessons@gentle-mail.co",
    "DRIP_REPLY_TO": "hello@gentle-mail.co",
    "DRIP_POSTAL_ADDRESS": "Gentle Mail LLC, 42 Harbour Road, Portland, ME 04101, USA",
    "DRIP_ADMIN_PASSWORD": "a long operator password",
    "DRIP_METRICS_TOKEN": "metrics-token-for-prometheus",
}
# What the shell running the tests might have set: removed, so only the test's values count.
UNSET = {
    name: None
    for name in os.environ
    if name.startswith(("DRIP_", "SENDGRID_")) and name != "DRIP_ARTICLE_PATH"
}


def drip(var_dir: Path, *args: str, **env: str | None) -> Result:
    values: dict[str, str | None] = {
        **UNSET,
        "DRIP_VAR_DIR": str(var_dir),
        "DRIP_COURSE_DIR": str(COURSE_DIR),
        "DRIP_DATABASE_URL": f"sqlite:///{var_dir}/drip.sqlite3",
        **env,
    }
    return CliRunner().invoke(main, list(args), env=values, catch_exceptions=False)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def test_check_passes_on_a_complete_configuration(tmp_path: Path) -> None:
    result = drip(tmp_path, "check", **COMPLETE)

    assert result.exit_code == 0, result.output
    assert result.output == "ready to send real mail\n"


PLACEHOLDERS = {
    "sender on example.com": ("DRIP_SENDER_EMAIL", "lessons@example.com"),
    "sender on example.org": ("DRIP_SENDER_EMAIL", "lessons@example.org"),
    "sender on a subdomain of example.net": ("DRIP_SENDER_EMAIL", "a@mail.example.net"),
    "sender on the .example TLD": ("DRIP_SENDER_EMAIL", "lessons@houseplants.example"),
    "sender on the .test TLD": ("DRIP_SENDER_EMAIL", "lessons@drip.test"),
    "sender on the .invalid TLD": ("DRIP_SENDER_EMAIL", "lessons@nowhere.invalid"),
    "sender on the .localhost TLD": ("DRIP_SENDER_EMAIL", "lessons@mail.localhost"),
    "reply-to on a reserved domain": ("DRIP_REPLY_TO", "hello@example.com"),
    "the shipped postal address": ("DRIP_POSTAL_ADDRESS", SHIPPED_POSTAL_ADDRESS),
    "an Example Street address": ("DRIP_POSTAL_ADDRESS", "Jo Doe, 7 example street, Reno, USA"),
    "an http base URL": ("DRIP_BASE_URL", "http://courses.gentle-mail.co"),
    "no affiliate URL": ("DRIP_AFFILIATE_URL", None),
    "a short secret key": ("DRIP_SECRET_KEY", "0123456789abcdefghijklmnopq"),
    "a placeholder secret key": ("DRIP_SECRET_KEY", "change-me-change-me-change-me-change-me"),
    "the generated development key": ("DRIP_SECRET_KEY", None),
    "no webhook key": ("DRIP_SENDGRID_WEBHOOK_KEY", None),
}


@pytest.mark.parametrize(("variable", "value"), PLACEHOLDERS.values(), ids=PLACEHOLDERS.keys())
def test_check_fails_with_one_line_naming_each_placeholder(
    tmp_path: Path, variable: str, value: str | None
) -> None:
    result = drip(tmp_path, "check", **(COMPLETE | {variable: value}))

    assert result.exit_code == 1
    assert len(error_lines(result)) == 1, result.output
    assert error_lines(result)[0].startswith(f"error: {variable}: ")


def test_the_shipped_course_unconfigured_fails_on_every_placeholder(tmp_path: Path) -> None:
    result = drip(tmp_path, "check")

    named = {line.split(":")[1].strip() for line in error_lines(result)}
    assert result.exit_code == 1
    assert named == {
        "DRIP_SENDER_EMAIL",
        "DRIP_REPLY_TO",
        "DRIP_POSTAL_ADDRESS",
        "DRIP_BASE_URL",
        "DRIP_AFFILIATE_URL",
        "DRIP_SECRET_KEY",
        "DRIP_SENDGRID_WEBHOOK_KEY",
    }


@pytest.mark.parametrize("variable", ["DRIP_ADMIN_PASSWORD", "DRIP_METRICS_TOKEN"])
def test_an_unset_admin_password_or_metrics_token_only_warns(tmp_path: Path, variable: str) -> None:
    result = drip(tmp_path, "check", **(COMPLETE | {variable: None}))

    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith(f"warning: {variable}: unset")
    assert result.output.splitlines()[-1] == "ready to send real mail (see the warnings above)"


def test_the_environment_replaces_the_course_files_sender_and_address(tmp_path: Path) -> None:
    settings = load_settings(COMPLETE | {"DRIP_VAR_DIR": str(tmp_path)})
    course = load_course(COURSE_DIR, overrides=settings.course_overrides)

    assert (course.sender_name, course.sender_email) == ("Gentle Mail", "lessons@gentle-mail.co")
    assert course.reply_to == "hello@gentle-mail.co"
    assert course.postal_address == COMPLETE["DRIP_POSTAL_ADDRESS"]
    assert load_course(COURSE_DIR).sender_email == "lessons@example.com"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DRIP_SENDER_EMAIL", "lessons at gentle-mail.co", "expected an email address"),
        ("DRIP_REPLY_TO", "hello@", "expected an email address"),
        ("DRIP_SENDER_NAME", "Gentle\nBcc: everyone@gentle-mail.co", "expected one line"),
        ("DRIP_POSTAL_ADDRESS", "   ", "expected one line"),
    ],
)
def test_a_bad_sender_setting_fails_at_start_naming_the_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: {expected}"):
        load_settings({"DRIP_VAR_DIR": str(tmp_path), variable: value})


# --- the start-up gate -----------------------------------------------------------


def sendgrid_settings(tmp_path: Path, host: str, **over: Any) -> Any:
    return make_settings(
        "sqlite",
        f"sqlite:///{tmp_path}/drip.sqlite3",
        "redis://127.0.0.1:6379",
        tmp_path,
        **({"email_backend": "sendgrid", "sendgrid_api_key": "SG.not-a-real-key"} | over),
        sendgrid_host=host,
    )


@pytest.mark.parametrize("host", [REAL_SENDGRID, "https://eu.api.sendgrid.com"])
def test_the_app_refuses_to_start_against_sendgrid_with_the_placeholders(
    tmp_path: Path, host: str
) -> None:
    with pytest.raises(NotReady) as refused:
        create_app(sendgrid_settings(tmp_path, host))

    named = {problem.variable for problem in refused.value.problems}
    assert {"DRIP_SENDER_EMAIL", "DRIP_POSTAL_ADDRESS", "DRIP_AFFILIATE_URL"} <= named
    assert "DRIP_SENDGRID_WEBHOOK_KEY: unset" in str(refused.value)


def test_the_app_starts_against_sendgrid_once_configured(tmp_path: Path) -> None:
    settings = sendgrid_settings(
        tmp_path,
        REAL_SENDGRID,
        base_url=COMPLETE["DRIP_BASE_URL"],
        secret_key=COMPLETE["DRIP_SECRET_KEY"],
        affiliate_url=COMPLETE["DRIP_AFFILIATE_URL"],
        sendgrid_webhook_key=COMPLETE["DRIP_SENDGRID_WEBHOOK_KEY"],
        sender_email=COMPLETE["DRIP_SENDER_EMAIL"],
        reply_to=COMPLETE["DRIP_REPLY_TO"],
        postal_address=COMPLETE["DRIP_POSTAL_ADDRESS"],
    )

    app = create_app(settings)

    assert app.extensions["drip"].course.sender_email == "lessons@gentle-mail.co"


@pytest.mark.parametrize(
    "over",
    [{"email_backend": "outbox"}, {}],
    ids=["outbox", "sendgrid aimed at a local sink"],
)
def test_the_app_starts_with_warnings_when_no_real_mail_goes_out(
    tmp_path: Path, over: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = sendgrid_settings(tmp_path, "http://127.0.0.1:8025", **over)

    with caplog.at_level(logging.WARNING, logger="drip.ops.readiness"):
        create_app(settings)

    warned = [record.getMessage() for record in caplog.records]
    assert any("DRIP_POSTAL_ADDRESS" in message for message in warned)
    assert any("DRIP_AFFILIATE_URL" in message for message in warned)


def test_drip_run_exits_1_against_sendgrid_with_the_placeholders(tmp_path: Path) -> None:
    result = drip(tmp_path, "run", SENDGRID_API_KEY="SG.not-a-real-key")

    assert result.exit_code == 1
    assert "error: DRIP_POSTAL_ADDRESS: " in result.output
    assert "not starting: mail would really go out through SendGrid" in result.output
    assert not (tmp_path / "drip.sqlite3").exists()  # it stopped before touching anything


def test_drip_run_against_a_local_sink_only_warns(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        # The port is taken so that `drip run` stops at the next check, after the gate.
        result = drip(
            tmp_path,
            "run",
            "--port",
            str(port),
            SENDGRID_API_KEY="SG.dev",
            DRIP_SENDGRID_HOST="http://127.0.0.1:8025",
        )

    assert "not ready for real mail (fine while mail goes to http://127.0.0.1:8025):" in (
        result.output
    )
    assert "  error: DRIP_POSTAL_ADDRESS: " in result.output
    assert f"another program uses 127.0.0.1:{port}" in result.output


def test_a_worker_refuses_to_start_against_sendgrid_with_the_placeholders(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "SENDGRID_"))}
    env.update(
        DRIP_VAR_DIR=str(tmp_path),
        DRIP_COURSE_DIR=str(COURSE_DIR),
        SENDGRID_API_KEY="SG.not-a-real-key",
    )
    # Celery imports this module to find its app (`celery -A drip.worker:celery worker`).
    loaded = subprocess.run(
        [sys.executable, "-c", "import drip.worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert loaded.returncode != 0
    assert "NotReady: not ready to send real mail" in loaded.stderr
    assert "DRIP_POSTAL_ADDRESS" in loaded.stderr
