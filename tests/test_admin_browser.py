"""Every /admin page in headless chromium, signed out and signed in, with the dashboard in
the known state of tests/test_admin.py; screenshots go to test-artifacts/admin/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.browser import chromium, live_server
from tests.conftest import ROOT, Stack
from tests.test_admin import PASSWORD, KnownState, admin_stack, build_known_state

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts" / "admin"


@pytest.fixture(scope="module")
def backend() -> str:
    # The pages are the same on both databases (tests/test_admin.py checks both): SQLite.
    return "sqlite"


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack], sink: Any) -> Stack:
    return admin_stack(stack_factory, sink)


def pages(known: KnownState) -> dict[str, str]:
    return {
        "health": "/admin/",
        "course": "/admin/course",
        "deliveries": "/admin/deliveries",
        "subscribers": "/admin/subscribers",
        "subscriber": f"/admin/subscribers/{known.ids['zoe']}",
        "preview": "/admin/preview/2",
    }


def watch_requests(page: Any, base: str) -> list[str]:
    """Every URL the page asks for that is not this server: the dashboard asks for none."""
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((base, "data:", "about:"))
            else elsewhere.append(request.url)
        ),
    )
    return elsewhere


def test_every_page_signed_out_leads_to_sign_in(stack: Stack, sink: Any) -> None:
    known = build_known_state(stack, sink)
    with live_server(stack.app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for path in pages(known).values():
            page.goto(base + path)
            assert page.url.startswith(f"{base}/admin/login?next="), path
            assert page.locator("h1").inner_text() == "Sign in"
        page.fill("#password", "not it")
        page.click("button[type=submit]")
        assert "Wrong password" in page.locator("[role=alert]").inner_text()


def test_every_page_signed_in_in_the_known_state(stack: Stack, sink: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    known = build_known_state(stack, sink)
    with live_server(stack.app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        elsewhere = watch_requests(page, base)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/admin/course")
        page.screenshot(path=str(ARTIFACTS / "login.png"))
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/admin/course")

        for name, path in pages(known).items():
            page.goto(base + path)
            assert page.locator("h1").count() == 1, name
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        page.goto(f"{base}/admin/")
        for key in ("workers", "tick", "circuit", "failures", "backlog", "queue"):
            assert page.locator(f"#signal-{key}").get_attribute("data-level") == "green", key
        page.goto(f"{base}/admin/course")
        assert page.locator('[data-step="lesson 1"]').inner_text() == "5"
        assert page.locator("svg.chart").count() == 3
        page.goto(f"{base}/admin/preview/2")
        page.frame_locator("iframe.mail").locator("text=Alex").first.wait_for()

        page.goto(f"{base}/admin/deliveries")
        failed = known.deliveries[("eve", 1)]
        page.locator(f'tr[data-delivery="{failed}"] button', has_text="Retry").click()
        assert "goes again at the next tick" in page.locator(".flash").inner_text()
        page.screenshot(path=str(ARTIFACTS / "deliveries-after-retry.png"), full_page=True)

        page.click("text=Sign out")
        page.wait_for_url(f"{base}/admin/login")
        page.goto(f"{base}/admin/")
        assert page.url.startswith(f"{base}/admin/login")
    assert elsewhere == [], "no page fetches anything from another host"
    assert errors == []
    assert (ARTIFACTS / "health.png").exists()
