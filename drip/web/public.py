"""The pages a subscriber sees: landing and signup, confirm, unsubscribe, the CTA redirect."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from drip import tokens as purposes
from drip.services import current_services, kick_tick
from drip.subscribers import subscriptions
from drip.subscribers.clicks import record_click, with_click_ref
from drip.subscribers.validation import InvalidInput, clean_signup
from drip.tokens import InvalidToken
from drip.web.extensions import csrf
from drip.web.limits import AddressLimited
from drip.web.signup import (
    client_address,
    consent_context,
    count_refused,
    sender_waker,
    sign_up,
)

blueprint = Blueprint("public", __name__)

HONEYPOT_FIELD = "website"


@blueprint.get("/")
def landing() -> str:
    return _landing_page(errors={}, values={})


def _landing_page(errors: dict[str, str], values: dict[str, str]) -> str:
    course = current_services().course
    return render_template(
        "landing.html", course=course, care_note=course.care_note, errors=errors, values=values
    )


@blueprint.post("/subscribe")
def subscribe() -> Response | tuple[str, int]:
    # The CSRF token was checked before this view runs (flask-wtf, app-wide).
    services = current_services()
    client = client_address()
    form = request.form
    if form.get(HONEYPOT_FIELD):
        # A bot filled the hidden field: answer as if it worked, store nothing.
        count_refused(services, client)
        return redirect(url_for(".thanks"), code=303)
    try:
        signup = clean_signup(form.get("email"), form.get("first_name"), form.get("timezone"))
    except InvalidInput as exc:
        count_refused(services, client)
        values = {"email": form.get("email", ""), "first_name": form.get("first_name", "")}
        return _landing_page(errors={exc.field: exc.message}, values=values), 400
    try:
        consent = consent_context(services, "form:/")
        sign_up(services, signup, consent, client=client, wake_sender=sender_waker())
    except AddressLimited as exc:
        return address_limited_page(exc)
    return redirect(url_for(".thanks"), code=303)


def address_limited_page(exc: AddressLimited) -> Response:
    page = render_template(
        "error.html",
        status=429,
        title="Too many confirmation emails",
        message="We already sent this address several confirmation emails today. "
        "Please use one of those, or try again tomorrow.",
    )
    return Response(page, status=429, headers={"Retry-After": str(exc.retry_after)})


@blueprint.get("/thanks")
def thanks() -> str:
    return render_template("thanks.html", course=current_services().course)


def _read_token(purpose: str, token: str) -> list[int]:
    try:
        return current_services().tokens.read(purpose, token)
    except InvalidToken as exc:
        abort(404, description=str(exc))


@blueprint.get("/confirm/<token>")
def confirm_page(token: str) -> str:
    # GET changes nothing: mail scanners follow links (the unsubscribe link must not act on a GET).
    _read_token(purposes.CONFIRM, token)
    return render_template("confirm.html", course=current_services().course, token=token)


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> tuple[str, int] | str:
    subscriber_id, consent_id = _read_token(purposes.CONFIRM, token)[:2]
    services = current_services()
    with services.database.session() as session:
        outcome = subscriptions.confirm(
            session,
            subscriber_id,
            consent_id,
            course_slug=services.course.slug,
            now=services.now(),
            ip=request.remote_addr or "",
        )
    if not outcome.confirmed:
        return render_template("invalid_link.html"), 410
    if outcome.newly_enrolled:
        # Lesson 1 goes within seconds, not at the next scheduled tick.
        kick_tick()
    return render_template("confirmed.html", course=services.course)


@blueprint.get("/u/<token>")
def unsubscribe_page(token: str) -> str:
    _read_token(purposes.UNSUBSCRIBE, token)
    return render_template("unsubscribe.html", course=current_services().course, token=token)


@blueprint.post("/u/<token>")
@csrf.exempt
def unsubscribe(token: str) -> str:
    """RFC 8058 one-click: no cookie, no CSRF token, no redirect; repeating it is harmless."""
    (subscriber_id,) = _read_token(purposes.UNSUBSCRIBE, token)[:1]
    services = current_services()
    with services.database.session() as session:
        subscriptions.unsubscribe(session, subscriber_id, now=services.now())
    return render_template("unsubscribed.html", course=services.course)


@blueprint.route("/r/<token>", methods=["GET", "HEAD"])
def click(token: str) -> Response:
    """Tracked call to action: only to the course's affiliate URL, never to one from the request."""
    services = current_services()
    try:
        (delivery_id,) = services.tokens.read(purposes.CLICK, token)[:1]
    except (InvalidToken, ValueError):
        # A forged or mangled link still reaches the offer; it just is not counted.
        return redirect(services.course.cta.url, code=302)
    with services.database.session() as session:
        recorded = record_click(
            session,
            delivery_id,
            now=services.now(),
            method=request.method,
            user_agent=request.headers.get("User-Agent", ""),
        )
        ref = recorded.ref if recorded is not None else None
    if ref is None:
        return redirect(services.course.cta.url, code=302)
    # The network hands this id back with a sale (docs/revenue.md): it names the click only.
    param = services.settings.affiliate_click_param
    return redirect(with_click_ref(services.course.cta.url, param, ref), code=302)
