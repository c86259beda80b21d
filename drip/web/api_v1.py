"""The integrators' API under /api/v1: subscribers, enrollments, events, stats (bearer keys)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from drip.data.models import EnrollmentStatus, SubscriberStatus
from drip.integrations import directory, feed
from drip.integrations.api_keys import Scope
from drip.ops import stats
from drip.services import Services, current_services
from drip.subscribers import preferences, privacy, subscriptions
from drip.subscribers.validation import InvalidInput
from drip.web import api_params as params
from drip.web.api_auth import current_caller, requires
from drip.web.api_errors import error

blueprint = Blueprint("api_v1", __name__, url_prefix="/api/v1")

LISTED_STATUSES = tuple(s.value for s in SubscriberStatus if s != SubscriberStatus.ERASED)
ENROLLMENT_STATUSES = tuple(s.value for s in EnrollmentStatus)
Answer = tuple[Response, int] | Response


def invalid_input_is_422(view: Callable[..., Answer]) -> Callable[..., Answer]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Answer:
        try:
            return view(*args, **kwargs)
        except InvalidInput as exc:
            return error(422, exc.field, exc.message)

    return wrapped


def _page(items: list[dict[str, Any]], limit: int, next_cursor: str | None) -> Response:
    return jsonify({"items": items, "next_cursor": next_cursor if len(items) == limit else None})


def _not_found() -> tuple[Response, int]:
    return error(404, None, "no such subscriber")


@blueprint.get("/subscribers")
@requires(Scope.READ)
@invalid_input_is_422
def list_subscribers() -> Answer:
    where = directory.SubscriberFilter(
        status=params.choice("status", LISTED_STATUSES),
        email=params.text("email", 254),
        lesson=params.integer("lesson", default=None, low=1, high=1000),
        signed_up_from=params.day("signed_up_from"),
        signed_up_until=params.day("signed_up_until"),
    )
    after, limit = params.id_cursor(), params.limit()
    services = current_services()
    with services.database.session() as session:
        items = directory.list_subscribers(
            session, services.course.slug, where, after=after, limit=limit
        )
    return _page(items, limit, str(items[-1]["id"]) if items else None)


@blueprint.get("/subscribers/<int:subscriber_id>")
@requires(Scope.READ)
def get_subscriber(subscriber_id: int) -> Answer:
    services = current_services()
    with services.database.session() as session:
        row = (
            directory.find_subscriber(session, subscriber_id)
            if subscriber_id <= params.MAX_ID
            else None
        )
        if row is None:
            return _not_found()
        return jsonify(directory.subscriber_view(session, row, services.course.slug))


@blueprint.get("/subscribers/<int:subscriber_id>/export")
@requires(Scope.READ)
def export_subscriber(subscriber_id: int) -> Answer:
    services = current_services()
    with services.database.session() as session:
        if (
            subscriber_id > params.MAX_ID
            or directory.find_subscriber(session, subscriber_id) is None
        ):
            return _not_found()
        return jsonify(privacy.export(session, subscriber_id))


def _action(subscriber_id: int, act: Callable[[Session, Services], bool], refused: str) -> Answer:
    services = current_services()
    with services.database.session() as session:
        if (
            subscriber_id > params.MAX_ID
            or directory.find_subscriber(session, subscriber_id) is None
        ):
            return _not_found()
        if not act(session, services):
            return error(409, None, refused)
    with services.database.session() as session:
        row = directory.find_subscriber(session, subscriber_id)
        assert row is not None
        return jsonify(directory.subscriber_view(session, row, services.course.slug))


@blueprint.post("/subscribers/<int:subscriber_id>/unsubscribe")
@requires(Scope.WRITE)
def unsubscribe(subscriber_id: int) -> Answer:
    return _action(
        subscriber_id,
        lambda session, s: subscriptions.unsubscribe(session, subscriber_id, now=s.now()),
        "this subscriber cannot be unsubscribed",
    )


@blueprint.post("/subscribers/<int:subscriber_id>/pause")
@requires(Scope.WRITE)
def pause(subscriber_id: int) -> Answer:
    return _action(
        subscriber_id,
        lambda session, s: preferences.pause(session, subscriber_id, s.course.slug),
        "there is no running course to pause",
    )


@blueprint.post("/subscribers/<int:subscriber_id>/resume")
@requires(Scope.WRITE)
def resume(subscriber_id: int) -> Answer:
    def act(session: Session, s: Services) -> bool:
        timing = preferences.Timing(s.course.send_hour, s.settings.day_seconds)
        return preferences.resume(session, subscriber_id, s.course.slug, now=s.now(), timing=timing)

    return _action(subscriber_id, act, "there is no paused course to resume")


@blueprint.post("/subscribers/<int:subscriber_id>/restart")
@requires(Scope.WRITE)
def restart(subscriber_id: int) -> Answer:
    return _action(
        subscriber_id,
        lambda session, s: preferences.restart(session, subscriber_id, s.course.slug, now=s.now()),
        "only an active subscriber can restart the course",
    )


@blueprint.delete("/subscribers/<int:subscriber_id>")
@requires(Scope.WRITE)
def erase(subscriber_id: int) -> Answer:
    services = current_services()
    caller = current_caller()
    with services.database.session() as session:
        done = subscriber_id <= params.MAX_ID and privacy.erase(
            session,
            subscriber_id,
            secret_key=services.settings.secret_key,
            now=services.now(),
            actor=f"api-key:{caller.key_id if caller else '?'}",
        )
    if not done:
        return _not_found()
    return Response(status=204)


@blueprint.get("/enrollments")
@requires(Scope.READ)
@invalid_input_is_422
def list_enrollments() -> Answer:
    status = params.choice("status", ENROLLMENT_STATUSES)
    after, limit = params.id_cursor(), params.limit()
    with current_services().database.session() as session:
        items = directory.list_enrollments(session, status=status, after=after, limit=limit)
    return _page(items, limit, str(items[-1]["id"]) if items else None)


@blueprint.get("/events")
@requires(Scope.READ)
@invalid_input_is_422
def list_events() -> Answer:
    after, limit = params.feed_cursor(), params.limit()
    with current_services().database.session() as session:
        items, position = feed.read(session, after, limit)
    cursor = params.feed_cursor_text(position) if position.micros >= 0 else None
    # The feed is a stream: the cursor is always given back, so a poller can wait and ask again.
    return jsonify({"items": items, "next_cursor": cursor})


@blueprint.get("/stats")
@requires(Scope.READ)
def get_stats() -> Answer:
    services = current_services()
    with services.database.session() as session:
        steps = stats.funnel(session, services.course)
        lessons = stats.lesson_stats(session, services.course)
    return jsonify(
        {
            "funnel": [{"step": s.label, "count": s.count, "exit": s.exit} for s in steps],
            "lessons": [
                {
                    "lesson": row.number,
                    "subject": row.subject,
                    "sent": row.sent,
                    "failed": row.failed,
                    "opened": row.opened,
                    "clicks": row.clicks,
                    "clickers": row.clickers,
                    "click_rate": row.click_rate,
                    "unsubscribes": row.unsubscribes,
                }
                for row in lessons
            ],
        }
    )
