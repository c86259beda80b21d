"""The dashboard's pages: health first, then the course, deliveries, subscribers, preview."""

from __future__ import annotations

from datetime import datetime

from flask import abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from drip.course import preview, render
from drip.data.models import Subscriber
from drip.ops import health, revenue, stats
from drip.services import current_services
from drip.web.admin import charts, queries
from drip.web.admin.blueprint import blueprint
from drip.web.admin.calendar import lesson_calendar, local_time


@blueprint.get("/")
def health_page() -> str:
    services = current_services()
    celery = current_app.extensions["celery"]
    report = health.check(services.database, services.settings, celery, services.now())
    return render_template("admin/health.html", report=report, Level=health.Level)


@blueprint.get("/course")
def course_page() -> str:
    services = current_services()
    course, now = services.course, services.now()
    with services.database.session() as session:
        funnel = stats.funnel(session, course)
        lessons = stats.lesson_stats(session, course)
        days = stats.daily(session, now)
        backlog = stats.backlog_history(session, now)
    return render_template(
        "admin/course.html",
        course=course,
        funnel=funnel,
        lessons=lessons,
        charts=_course_charts(days, backlog, lessons),
    )


DAILY = "Signups and lessons sent per day (UTC)"
BACKLOG = "Deliveries due and not yet sent, hour by hour (last 24 hours, UTC)"
CLICKS = "Call-to-action click rate per lesson (people; scanners left out)"


def _course_charts(
    days: list[stats.Day],
    backlog: list[tuple[datetime, int]],
    lessons: list[stats.LessonStats],
) -> list[tuple[str, Markup]]:
    """(caption, chart) pairs: where an operator would rather look than read."""
    day_labels = [day.day.strftime("%d %b") for day in days]
    daily = [
        charts.Series("signups", [day.signups for day in days]),
        charts.Series("lessons sent", [day.sends for day in days]),
    ]
    hours = [moment.strftime("%H:%M") for moment, _ in backlog]
    waiting = [count for _, count in backlog]
    lesson_labels = [f"L{lesson.number}" for lesson in lessons]
    rates = [charts.Series("click rate", [lesson.click_rate for lesson in lessons])]
    return [
        (DAILY, charts.bar_chart(day_labels, daily, title=DAILY)),
        (BACKLOG, charts.line_chart(hours, waiting, title=BACKLOG)),
        (CLICKS, charts.bar_chart(lesson_labels, rates, title=CLICKS, fmt=charts.percent)),
    ]


REVENUE = "Net revenue per lesson"


@blueprint.get("/revenue")
def revenue_page() -> str:
    """Which lesson and which signup week earned money: sales net of refunds, per click."""
    services = current_services()
    with services.database.session() as session:
        lessons = revenue.by_lesson(session, services.course)
        weeks = revenue.by_signup_week(session, services.now())
        summary = revenue.summary(session)
    currency = summary.currency
    # Bars start at zero: a lesson whose refunds outweigh its sales shows none.
    amounts = [max(0.0, row.revenue.get(currency, 0) / 100) for row in lessons]
    chart = charts.bar_chart(
        [row.label.replace("lesson ", "L") for row in lessons],
        [charts.Series(f"revenue ({currency})", amounts)],
        title=f"{REVENUE} ({currency})",
    )
    return render_template(
        "admin/revenue.html",
        lessons=lessons,
        weeks=weeks,
        summary=summary,
        currency=currency,
        money=revenue.money,
        chart=chart,
        chart_caption=f"{REVENUE} ({currency}, after refunds)",
    )


@blueprint.get("/deliveries")
def deliveries_page() -> str:
    services = current_services()
    with services.database.session() as session:
        problems = queries.problem_deliveries(session)
        audit = queries.audit_entries(session)
    return render_template("admin/deliveries.html", problems=problems, audit=audit)


@blueprint.get("/subscribers")
def subscribers_page() -> str:
    query = request.args.get("q", "")[:254]
    with current_services().database.session() as session:
        found = queries.find_subscribers(session, query)
    return render_template("admin/subscribers.html", subscribers=found, query=query)


@blueprint.get("/subscribers/<int:subscriber_id>")
def subscriber_page(subscriber_id: int) -> str:
    services = current_services()
    with services.database.session() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            abort(404, description="no subscriber with this id")
        calendar = lesson_calendar(
            session, subscriber, services.course, day_seconds=services.settings.day_seconds
        )
        records = queries.subscriber_records(session, subscriber_id)
        audit = queries.subscriber_audit(session, subscriber_id)
    return render_template(
        "admin/subscriber.html",
        subscriber=subscriber,
        calendar=calendar,
        audit=audit,
        local=lambda moment: local_time(moment, subscriber.timezone),
        **records,
    )


@blueprint.get("/preview")
def preview_index() -> Response:
    return redirect(url_for("admin.preview_page", day=1), code=303)


@blueprint.get("/preview/<int:day>")
def preview_page(day: int) -> str:
    """Lesson `day` of the current course as a subscriber gets it, with sample values."""
    services = current_services()
    course, base_url = services.course, services.settings.base_url
    if not 1 <= day <= len(course.lessons):
        abort(404, description=f"the course has lessons 1 to {len(course.lessons)}")
    lesson = course.lesson(day)
    rendered = render.render_lesson(course, lesson, base_url)
    html, text = render.personalize(rendered, preview.sample_values(course, base_url))
    return render_template(
        "admin/preview.html", course=course, lesson=lesson, rendered=rendered, html=html, text=text
    )
