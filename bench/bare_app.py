"""The yardstick: a Flask app that answers the signup route with "ok" and does nothing else.

Served by the same gunicorn command as drip, so the ratio drip / bare is what
drip's own work costs.
"""

from flask import Flask

app = Flask(__name__)


@app.post("/api/v1/subscribers")
def ok() -> tuple[str, int]:
    return "ok", 202
