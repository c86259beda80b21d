"""Running the real `drip` command against a test stack's database, key and course."""

from __future__ import annotations

from click.testing import CliRunner, Result

from tests.conftest import Stack


def run_cli(stack: Stack, *args: str) -> Result:
    from drip.cli import main

    settings = stack.services.settings
    env = {
        "DRIP_DATABASE_URL": settings.database_url,
        "DRIP_SECRET_KEY": settings.secret_key,
        "DRIP_COURSE_DIR": str(settings.course_dir),
        "DRIP_VAR_DIR": str(settings.var_dir),
        "DRIP_BASE_URL": settings.base_url,
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
