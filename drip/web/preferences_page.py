"""The preferences page behind the link in every lesson footer: see the
subscription, pause or resume it, change when lessons go, restart, download
or erase one's data. GET changes nothing; every change is a CSRF-protected
POST that redirects back to the page (unsubscribe posts to /u/<token>).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from zoneinfo import available_timezones

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from drip import tokens as purposes
from drip.sending.schedule import zone
from drip.services import Services, current_services, kick_tick
from drip.subscribers import preferences, privacy
from drip.subscribers.validation import InvalidInput, clean_timezone
from drip.tokens import InvalidToken

blueprint = Blueprint("preferences", __name__)

HOURS = range(24)


@lru_cache(maxsize=1)
def zone_names() -> list[str]:
    """The IANA zones for the time zone list (the same set validation accepts)."""
    return sorted(available_timezones())


def _subscriber_id(token: str) -> int:
    try:
        (subscriber_id,) = current_services().tokens.read(purposes.PREFERENCES, token)[:1]
    except (InvalidToken, ValueError) as exc:
        abort(404, description=str(exc) or "this link is not valid")
    return subscriber_id


def _timing(services: Services) -> preferences.Timing:
    return preferences.Timing(services.course.send_hour, services.settings.day_seconds)


def _overview(session: Session, subscriber_id: int, services: Services) -> preferences.Overview:
    shown = preferences.overview(session, subscriber_id, services.course.slug, _timing(services))
    if shown is None:  # erased, or never existed
        abort(404, description="this link is no longer valid")
    return shown


def _page(token: str, *, view: str = "page", error: str = "") -> str:
    services = current_services()
    subscriber_id = _subscriber_id(token)
    with services.database.session() as session:
        shown = _overview(session, subscriber_id, services)
    local_due = shown.next_due_at.astimezone(zone(shown.timezone)) if shown.next_due_at else None
    return render_template(
        "preferences.html",
        course=services.course,
        token=token,
        unsubscribe_token=services.tokens.make(purposes.UNSUBSCRIBE, subscriber_id),
        subscription=shown,
        local_due=local_due,
        hours=HOURS,
        zones=zone_names(),
        view=view,
        error=error,
    )


@blueprint.get("/p/<token>")
def page(token: str) -> str:
    return _page(token)


def _act(token: str, action: Callable[[Session, int, Services, datetime], bool]) -> bool:
    services = current_services()
    subscriber_id = _subscriber_id(token)
    with services.database.session() as session:
        return action(session, subscriber_id, services, services.now())


def _back(token: str, done: bool, message: str, refusal: str) -> Response:
    flash(message if done else refusal)
    return redirect(url_for(".page", token=token), code=303)


@blueprint.post("/p/<token>/pause")
def pause(token: str) -> Response:
    done = _act(
        token,
        lambda session, sid, services, now: preferences.pause(session, sid, services.course.slug),
    )
    return _back(
        token,
        done,
        "Your course is paused. No lessons will arrive until you resume it.",
        "There is no running course to pause.",
    )


@blueprint.post("/p/<token>/resume")
def resume(token: str) -> Response:
    done = _act(
        token,
        lambda session, sid, services, now: preferences.resume(
            session, sid, services.course.slug, now=now, timing=_timing(services)
        ),
    )
    if done:
        kick_tick()
    return _back(
        token,
        done,
        "Your course is running again: the next lesson comes at your send hour.",
        "There is no paused course to resume.",
    )


@blueprint.post("/p/<token>/restart")
def restart(token: str) -> Response:
    done = _act(
        token,
        lambda session, sid, services, now: preferences.restart(
            session, sid, services.course.slug, now=now
        ),
    )
    if done:
        kick_tick()
    return _back(
        token,
        done,
        "The course starts again: lesson 1 is on its way.",
        "Only an active subscription can restart the course.",
    )


@blueprint.post("/p/<token>/schedule")
def change_schedule(token: str) -> Response | tuple[str, int]:
    try:
        send_hour = _send_hour(request.form.get("send_hour"))
        timezone = clean_timezone(request.form.get("timezone"))
    except InvalidInput as exc:
        return _page(token, error=f"{exc.field.replace('_', ' ')}: {exc.message}"), 400
    done = _act(
        token,
        lambda session, sid, services, now: preferences.change_schedule(
            session,
            sid,
            services.course.slug,
            send_hour=send_hour,
            timezone=timezone,
            now=now,
            timing=_timing(services),
        ),
    )
    return _back(
        token,
        done,
        f"Saved: lessons now go at {send_hour:02d}:00, {timezone} time.",
        "Only an active subscription can change when lessons go.",
    )


def _send_hour(raw: str | None) -> int:
    if raw is None or not raw.strip().isdigit() or int(raw) not in HOURS:
        raise InvalidInput("send_hour", "choose an hour from 0 to 23")
    return int(raw)


@blueprint.post("/p/<token>/export")
def export(token: str) -> Response:
    services = current_services()
    subscriber_id = _subscriber_id(token)
    with services.database.session() as session:
        _overview(session, subscriber_id, services)
        data = privacy.export(session, subscriber_id)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="my-data.json"',
            "Cache-Control": "no-store",
        },
    )


@blueprint.get("/p/<token>/erase")
def erase_confirm(token: str) -> str:
    # The confirmation step: a GET shows what will happen and changes nothing.
    return _page(token, view="erase")


@blueprint.post("/p/<token>/erase")
def erase(token: str) -> str:
    services = current_services()
    subscriber_id = _subscriber_id(token)
    with services.database.session() as session:
        erased = privacy.erase(
            session,
            subscriber_id,
            secret_key=services.settings.secret_key,
            now=services.now(),
            actor="subscriber (preferences page)",
        )
    if not erased:
        abort(404, description="this link is no longer valid")
    return render_template("preferences.html", course=services.course, view="erased")
