"""What operators see of the money: /admin/revenue, /metrics and `drip status`, each checked
against the conversion rows, and the revenue page in chromium."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from drip.cli.status import conversion_line
from drip.data.models import Conversion
from drip.ops import revenue
from tests.browser import chromium, live_server
from tests.conftest import Stack
from tests.revenue_fixtures import (
    ADMIN_PASSWORD,
    METRICS_TOKEN,
    click_for,
    clickbank_envelope,
    first_lesson_to,
    notification,
    post_clickbank,
)
from tests.revenue_fixtures import stack as stack
from tests.test_admin import sign_in


def known_sales(stack: Stack) -> None:
    """Lesson 1: three human clicks, two sales (27.50 and 10.00 USD), the second refunded;
    one 5.00 USD sale from no link of ours."""
    first_lesson_to(stack, 2)
    click_for(stack, "person0@example.com")
    tid0 = click_for(stack, "person0@example.com")
    tid1 = click_for(stack, "person1@example.com")
    for body in (
        notification("SALE", "R1", tid0, 27.5),
        notification("SALE", "R2", tid1, 10.0),
        notification("RFND", "R2", tid1, 10.0),
        notification("SALE", "R3", None, 5.0),
    ):
        assert post_clickbank(stack, clickbank_envelope(body)).status_code == 200


def cells(html: str, table: str, key: str) -> dict[str, str]:
    row = re.search(rf'<table id="{table}">.*?<tr {key}>(.*?)</tr>', html, re.S)
    assert row, key
    return dict(re.findall(r'data-col="(\w+)">([^<]*)<', row.group(1)))


def test_the_revenue_page_shows_the_figures_in_the_database(stack: Stack) -> None:
    known_sales(stack)
    client = stack.client
    assert sign_in(client, ADMIN_PASSWORD).status_code == 303
    html = client.get("/admin/revenue").get_data(as_text=True)
    lesson = cells(html, "revenue-lessons", 'data-lesson="1"')
    assert lesson == {
        "clicks": "3",
        "conversions": "2",
        "reversals": "1",
        "conversion_rate": "66.7%",
        "revenue": "27.50 USD",
        "epc": "9.17",
    }
    week = cells(html, "revenue-weeks", 'data-week="2026-03-02"')
    assert (week["clicks"], week["conversions"], week["revenue"]) == ("3", "2", "27.50 USD")
    with stack.session() as session:
        net = session.scalar(select(func.sum(Conversion.amount_cents)))
    figures = dict(re.findall(r'data-figure="(\w+)">([^<]*)<', html))
    assert figures["revenue"] == f"{net / 100:.2f} USD" == "32.50 USD"
    assert (figures["conversions"], figures["refund_rate"]) == ("3", "33.3%")
    assert figures["unattributed"] == "5.00 USD"
    assert figures["last_conversion"] == "2026-03-05 17:30 UTC"
    assert "<svg" in html and "Net revenue per lesson (USD)" in html


def scrape(stack: Stack) -> dict[tuple[str, frozenset[Any]], float]:
    answer = stack.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_conversions_and_money_from_the_database(stack: Stack) -> None:
    known_sales(stack)
    samples = scrape(stack)

    def conversions_total(lesson: str, kind: str) -> float:
        return samples[
            ("drip_conversions_total", frozenset({"lesson": lesson, "type": kind}.items()))
        ]

    with stack.session() as session:
        rows = session.execute(
            select(Conversion.lesson, Conversion.kind, func.count()).group_by(
                Conversion.lesson, Conversion.kind
            )
        ).all()
    for lesson, kind, count in rows:
        assert conversions_total("" if lesson is None else str(lesson), kind) == count
    assert (conversions_total("1", "SALE"), conversions_total("1", "RFND")) == (2, 1)
    assert conversions_total("", "SALE") == 1
    usd = frozenset({"currency": "USD"}.items())
    assert samples[("drip_revenue_total", usd)] == 42.5
    assert samples[("drip_revenue_reversed_total", usd)] == 10.0


def test_status_tells_the_age_of_the_last_conversion(stack: Stack) -> None:
    known_sales(stack)
    with stack.session() as session:
        last = revenue.last_conversion_at(session)
    assert last is not None
    now = last + timedelta(hours=3, minutes=20)
    assert conversion_line(last, now) == "last conversion: 3h 20m ago (2026-03-05 17:30 UTC)"
    assert conversion_line(None, now) == "last conversion: none yet"


@pytest.mark.browser
def test_chromium_loads_the_revenue_page(stack: Stack) -> None:
    known_sales(stack)
    with live_server(stack.app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/admin/revenue")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/admin/revenue")
        assert page.locator("h1").inner_text() == "Revenue"
        row = page.locator('#revenue-lessons tr[data-lesson="1"] [data-col="revenue"]')
        assert row.inner_text() == "27.50 USD"
        assert page.locator("svg.chart rect").count() >= 1
        assert page.locator("header a[aria-current=page]").inner_text() == "Revenue"
        assert errors == []
