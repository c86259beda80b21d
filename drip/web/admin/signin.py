"""Sign in and out; the guard in front of every other /admin route."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from drip.services import current_services
from drip.web.admin import attempts, auth
from drip.web.admin.blueprint import blueprint

OPEN_ENDPOINTS = frozenset({"admin.login", "admin.login_submit"})


@blueprint.before_request
def require_sign_in() -> Response | None:
    """Every /admin route but the sign-in page: a signed-in operator, or off to sign in."""
    if request.endpoint in OPEN_ENDPOINTS or auth.signed_in():
        return None
    wanted = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("admin.login", next=wanted), code=303)


def _safe_next(target: str | None) -> str:
    # Only back into the dashboard: never a redirect to another site (//evil, /\evil).
    if target and target.startswith("/admin") and "//" not in target and "\\" not in target:
        return target
    return url_for("admin.health_page")


def _page(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> Response:
    configured = auth.admin_password().configured
    html = render_template(
        "admin/login.html", error=error, configured=configured, not_configured=auth.NOT_CONFIGURED
    )
    return Response(html, status=status, headers=headers, mimetype="text/html")


@blueprint.get("/login")
def login() -> Response:
    return _page()


@blueprint.post("/login")
def login_submit() -> Response:
    settings = current_services().settings
    password = auth.admin_password()
    if not password.configured:
        return _page(auth.NOT_CONFIGURED, 403)
    address = request.remote_addr or "unknown"
    wait = attempts.wait_seconds(settings, address)
    if wait:
        minutes = max(1, round(wait / 60))
        message = f"Too many failed sign-ins from your address: try again in {minutes} min."
        return _page(message, 429, {"Retry-After": str(wait)})
    if not password.matches(request.form.get("password", "")):
        attempts.record_failure(settings, address)
        return _page("Wrong password. Check it and try again.", 401)
    attempts.clear(settings, address)
    auth.sign_in()
    return redirect(_safe_next(request.args.get("next")), code=303)


@blueprint.post("/logout")
def logout() -> Response:
    auth.sign_out()
    return redirect(url_for("admin.login"), code=303)
