"""Wires /admin into the app: its sign-in, pages and operations all attach to one blueprint."""

from __future__ import annotations

from flask import Flask

from drip.config import Settings
from drip.web.admin import auth, integrations, operations, pages, signin
from drip.web.admin.blueprint import blueprint

# Importing these modules attaches their views to the blueprint.
ROUTE_MODULES = (signin, pages, operations, integrations)


def init_app(app: Flask, settings: Settings) -> None:
    auth.init_app(app, settings)
    app.register_blueprint(blueprint)
