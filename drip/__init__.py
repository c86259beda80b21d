"""drip: an email-course drip service."""

from drip.app import create_app

__all__ = ["create_app"]
