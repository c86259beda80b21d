"""Entry point for gunicorn (`gunicorn drip.wsgi:app`)."""

from drip import create_app

app = create_app()
