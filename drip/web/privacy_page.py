"""The privacy notice (GET /privacy): who runs the course, what is kept, for how long,
and how to get it or have it erased (GDPR articles 13, 15 and 17). Linked from the
signup form and every email footer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, url_for

from drip.services import current_services

blueprint = Blueprint("privacy", __name__)


@blueprint.app_context_processor
def privacy_link() -> dict[str, Any]:
    """Every page may link the notice (the signup form must)."""
    return {"privacy_url": url_for("privacy.notice")}


@blueprint.get("/privacy")
def notice() -> str:
    services = current_services()
    settings, course = services.settings, services.course
    return render_template(
        "privacy.html",
        course=course,
        operator_name=settings.operator_name or course.sender_name,
        contact_email=course.reply_to or course.sender_email,
        pending_days=_days(settings.pending_expiry_seconds),
        sends_through_sendgrid=settings.email_backend == "sendgrid",
    )


def _days(seconds: int) -> int:
    return max(1, round(seconds / 86400))
