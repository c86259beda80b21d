"""Entry point for gunicorn (`gunicorn drip.wsgi:app`)."""

from drip.app import create_app

app = create_app()
