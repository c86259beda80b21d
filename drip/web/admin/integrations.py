"""/admin/integrations: API keys (list, create shown once, revoke) and webhook endpoints.

A new key is shown in the answer to the POST that made it, never through the
session (a flash message lives in the signed, not encrypted, session cookie).
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from drip.data.audit import audit
from drip.integrations import api_keys, webhook_endpoints
from drip.services import current_services
from drip.web.admin.blueprint import actor, blueprint

MAX_NAME = 100


def _page(new_key: str | None = None, status: int = 200) -> tuple[str, int]:
    with current_services().database.session() as session:
        keys = api_keys.all_keys(session)
        endpoints = [
            (row, webhook_endpoints.state(row)) for row in webhook_endpoints.all_endpoints(session)
        ]
        session.expunge_all()
    page = render_template(
        "admin/integrations.html", keys=keys, endpoints=endpoints, new_key=new_key
    )
    return page, status


@blueprint.get("/integrations")
def integrations_page() -> tuple[str, int]:
    return _page()


@blueprint.post("/api-keys")
def create_api_key() -> tuple[str, int] | Response:
    name = " ".join(request.form.get("name", "").split())[:MAX_NAME]
    scope = request.form.get("scope", "")
    if not name or scope not in (api_keys.Scope.READ, api_keys.Scope.WRITE):
        flash("Give the key a name and a scope (read or write).", "error")
        return redirect(url_for("admin.integrations_page"), code=303)
    services = current_services()
    now = services.now()
    with services.database.session() as session:
        row, key = api_keys.create(session, name, api_keys.Scope(scope), now=now)
        audit(session, actor(), "api_key.create", f"api_key:{row.id}", now, scope=scope)
    return _page(new_key=key, status=201)


@blueprint.post("/api-keys/<int:key_id>/revoke")
def revoke_api_key(key_id: int) -> Response:
    services = current_services()
    now = services.now()
    with services.database.session() as session:
        done = api_keys.revoke(session, str(key_id), now=now)
        if done:
            audit(session, actor(), "api_key.revoke", f"api_key:{key_id}", now)
    if done:
        flash(f"Key {key_id} is revoked; it stops working at once.", "ok")
    else:
        flash(f"Key {key_id} is not a live key; nothing changed.", "error")
    return redirect(url_for("admin.integrations_page"), code=303)
