"""drip: an email-course drip service."""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The Flask app factory (imported lazily so `drip course check` stays light)."""
    from drip.app import create_app as factory

    return factory(*args, **kwargs)
