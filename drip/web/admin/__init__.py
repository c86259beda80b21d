"""/admin: the operator dashboard. Every route but the sign-in page needs a signed-in operator."""

from __future__ import annotations

from flask import Flask

from drip.config import Settings


def init_app(app: Flask, settings: Settings) -> None:
    # Importing the route modules attaches their views to the blueprint (once per process).
    import drip.web.admin.operations
    import drip.web.admin.pages
    import drip.web.admin.signin  # noqa: F401
    from drip.web.admin import auth
    from drip.web.admin.blueprint import blueprint

    auth.init_app(app, settings)
    app.register_blueprint(blueprint)
