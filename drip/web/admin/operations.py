"""The dashboard's buttons: retry or skip a delivery; pause, resume or unsubscribe someone.

Each is a POST with the CSRF token, runs one audited action (actions.py) and
goes back to the page it came from with a one-line message.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from drip.services import current_services, kick_tick
from drip.subscribers.preferences import Timing
from drip.web.admin import actions
from drip.web.admin.blueprint import actor, blueprint


def _run(action: Callable[[Session], bool], done: str, refused: str) -> bool:
    with current_services().database.session() as session:
        acted = action(session)
    flash(done if acted else refused, "ok" if acted else "error")
    return acted


@blueprint.post("/deliveries/<int:delivery_id>/retry")
def retry_delivery(delivery_id: int) -> Response:
    now = current_services().now()
    if _run(
        lambda s: actions.retry_delivery(s, delivery_id, actor=actor(), now=now),
        f"Delivery {delivery_id} goes again at the next tick.",
        f"Delivery {delivery_id} is not failed or retrying any more; nothing changed.",
    ):
        kick_tick()
    return redirect(url_for("admin.deliveries_page"), code=303)


@blueprint.post("/deliveries/<int:delivery_id>/skip")
def skip_delivery(delivery_id: int) -> Response:
    now = current_services().now()
    _run(
        lambda s: actions.skip_delivery(s, delivery_id, actor=actor(), now=now),
        f"Delivery {delivery_id} is skipped and will not be sent.",
        f"Delivery {delivery_id} is already sent, sending or skipped; nothing changed.",
    )
    return redirect(url_for("admin.deliveries_page"), code=303)


def _back_to(subscriber_id: int) -> Response:
    return redirect(url_for("admin.subscriber_page", subscriber_id=subscriber_id), code=303)


@blueprint.post("/subscribers/<int:subscriber_id>/pause")
def pause_subscriber(subscriber_id: int) -> Response:
    services = current_services()
    slug, now = services.course.slug, services.now()
    _run(
        lambda s: actions.pause(s, subscriber_id, slug, actor=actor(), now=now),
        "Paused: no more lessons until resumed.",
        "Nothing to pause: the course is not running for this subscriber.",
    )
    return _back_to(subscriber_id)


@blueprint.post("/subscribers/<int:subscriber_id>/resume")
def resume_subscriber(subscriber_id: int) -> Response:
    services = current_services()
    slug, now = services.course.slug, services.now()
    timing = Timing(services.course.send_hour, services.settings.day_seconds)
    _run(
        lambda s: actions.resume(s, subscriber_id, slug, timing, actor=actor(), now=now),
        "Resumed: the next lesson goes at the subscriber's next send time.",
        "Nothing to resume: the course is not paused for this subscriber.",
    )
    return _back_to(subscriber_id)


@blueprint.post("/subscribers/<int:subscriber_id>/unsubscribe")
def unsubscribe_subscriber(subscriber_id: int) -> Response:
    services = current_services()
    now = services.now()
    _run(
        lambda s: actions.unsubscribe(s, subscriber_id, actor=actor(), now=now),
        "Unsubscribed: no more mail goes to this subscriber.",
        "This subscriber is gone (erased or unknown); nothing changed.",
    )
    return _back_to(subscriber_id)
