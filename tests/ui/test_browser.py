"""Real browser: Playwright drives Debian's headless Chromium against a running app (tiny model, SQLite file)."""

from pathlib import Path

import pytest
from sqlmodel import Session, select

from labeler.tables import Ranking
from tests.ui.conftest import PASSWORDS

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium (.ci/run installs it)",
    ),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def log_in(browser, url: str, name: str, password: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator("input[type=text]").first.fill(name)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Login").click()
    return page


def test_labeler_ranks_with_clicks_and_keyboard_then_admin_sees_it(running_app, browser, tmp_path):
    bad = log_in(browser, running_app.url, "alice", "not-the-password")
    bad.get_by_text("Incorrect").wait_for(timeout=10_000)
    bad.screenshot(path=tmp_path / "wrong-password.png")

    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#slot-0").wait_for(state="visible", timeout=20_000)
    assert page.locator("#admin-tab-button, button[role=tab]:has-text('Admin')").count() == 0
    first_prompt = page.locator("#prompt").inner_text()
    # clicks: answer 1 gets rank 2; keyboard: focus answers 2-4 and press digits, F flags answer 4
    page.locator("#rank-0 label:has-text('2')").click()
    page.locator("#text-1").click()
    page.keyboard.press("1")
    page.locator("#text-2").click()
    page.keyboard.press("3")
    page.locator("#text-3").click()
    page.keyboard.press("f")
    page.locator("#rank-2 input[value='3']").wait_for(state="attached")
    assert page.locator("#flag-3 input[value='nonsensical']").is_checked()
    page.screenshot(path=tmp_path / "ranked.png", full_page=True)
    page.locator("#text-0").click()
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    assert page.locator("#prompt").inner_text() != first_prompt
    page.screenshot(path=tmp_path / "next-set.png", full_page=True)

    with Session(running_app.engine) as s:
        [row] = s.exec(select(Ranking)).all()
    assert sorted(row.ranks.values()) == [1, 2, 3] and list(row.flags.values()) == ["nonsensical"]

    admin = log_in(browser, running_app.url, "admin", PASSWORDS["admin"])
    admin.get_by_role("tab", name="Admin").click()
    admin.locator("#dashboard-refresh").click()
    admin.get_by_text("Rankings:** 1").or_(admin.get_by_text("Rankings: 1")).first.wait_for(timeout=15_000)
    admin.screenshot(path=tmp_path / "dashboard.png", full_page=True)
