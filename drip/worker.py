"""Entry point for `celery -A drip.worker:celery` (celery cannot call an app factory itself)."""

from drip.app import create_app

app = create_app()
celery = app.extensions["celery"]
