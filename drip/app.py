"""The app factory: wiring only. Nothing here connects to Redis, the database or SendGrid."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from drip.celery_app import celery_init_app
from drip.clock import Clock
from drip.config import Settings, load_settings
from drip.ops import readiness
from drip.ops.logs import configure_logging
from drip.services import build_services
from drip.web import (
    api,
    api_v1,
    errors,
    metrics_endpoint,
    outbox_viewer,
    postbacks,
    preferences_page,
    privacy_page,
    probes,
    public,
    sendgrid_webhook,
)
from drip.web.admin import routes as admin_routes
from drip.web.extensions import csrf
from drip.web.signup import SEND_CONFIRMATIONS_TASK
from drip.web.signup_fast_path import SignupFastPath

MAX_REQUEST_BYTES = 64 * 1024  # a signup is a few hundred bytes; a 1 MB body is refused with 413


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
    )
    services = app.extensions["drip"] = build_services(settings, clock)
    csrf.init_app(app)
    celery = celery_init_app(app, settings)
    app.wsgi_app = SignupFastPath(  # type: ignore[method-assign]
        app.wsgi_app,
        services,
        wake_sender=lambda: celery.send_task(SEND_CONFIRMATIONS_TASK),
        max_body_bytes=MAX_REQUEST_BYTES,
    )
    if settings.trusted_proxies:
        # Client IPs (rate limits, consent records) come from the proxies' X-Forwarded-For.
        proxied = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=1, x_host=1)
        app.wsgi_app = proxied  # type: ignore[method-assign]
    _register_blueprints(app, settings)
    configure_logging(settings)
    # Raises NotReady when real mail would go out with placeholders (drip/ops/readiness.py).
    readiness.enforce(settings, services.course)
    return app


def _register_blueprints(app: Flask, settings: Settings) -> None:
    app.register_blueprint(public.blueprint)
    app.register_blueprint(preferences_page.blueprint)
    app.register_blueprint(privacy_page.blueprint)
    app.register_blueprint(api.blueprint)
    csrf.exempt(api.blueprint)
    app.register_blueprint(api_v1.blueprint)
    csrf.exempt(api_v1.blueprint)  # bearer keys, no cookies
    app.register_blueprint(sendgrid_webhook.blueprint)
    csrf.exempt(sendgrid_webhook.blueprint)  # signed by SendGrid instead
    app.register_blueprint(postbacks.blueprint)
    csrf.exempt(postbacks.blueprint)  # encrypted (ClickBank) or signed (generic) instead
    app.register_blueprint(probes.blueprint)
    app.register_blueprint(metrics_endpoint.blueprint)
    admin_routes.init_app(app, settings)
    errors.init_app(app)
    if settings.email_backend == "outbox":
        app.register_blueprint(outbox_viewer.blueprint)
