"""Trust boundaries against the running app over HTTP: the page cannot name another set, sessions end when an
admin disables a user or resets a password, request and upload sizes are bounded, uploads and export archives
are for admins, and failures reach clients as one sentence, never as Python's exception text."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from gradio_client import Client
from load_client import LabelingClient, LabelingError
from sqlmodel import Session, col, func, select

from labeler.store.tables import Ranking
from labeler.store.users import reset_password, set_disabled
from labeler.ui.guard import MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES, RECHECK_SECONDS
from tests.ui.conftest import PASSWORDS

STATUS = 2  # the status message among the labeling events' outputs


def count_rankings(engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count(col(Ranking.id)))).one()


def logged_in(url: str, name: str) -> httpx.Client:
    http = httpx.Client(base_url=url, timeout=30)
    assert http.post("login", data={"username": name, "password": PASSWORDS[name]}).status_code == 200
    return http


def submit_raw(http: httpx.Client, token: str, comment: str = "", ranks=(1, 2, 3, 4)) -> httpx.Response:
    page = {"token": token, "answers": [], "ranks": list(ranks), "flags": [None] * len(ranks)}
    data = [page, False, comment, ""]
    return http.post("gradio_api/run/submit_ranking", json={"data": data, "session_hash": "t"})


async def _page(url: str, name: str):
    async with LabelingClient(url, name, PASSWORDS[name]) as client:
        await client.login()
        return await client.next_set()


def test_a_page_cannot_submit_another_labelers_set(running_app):
    alices = asyncio.run(_page(running_app.url, "alice"))
    bob = logged_in(running_app.url, "bob")
    response = submit_raw(bob, alices.token)
    assert response.status_code == 200 and "not leased to you" in response.json()["data"][STATUS]
    assert count_rankings(running_app.engine) == 0


def test_a_forged_page_state_is_not_a_token(running_app):
    alice = logged_in(running_app.url, "alice")
    forged = {"set_id": 1, "completion_ids": [1, 2, 3, 4], "seconds_spent": -3e7, "guidelines_version": 999}
    response = submit_raw(alice, forged)
    assert response.status_code != 200 or "Not submitted" in str(response.json()["data"][STATUS])
    response = submit_raw(alice, "import:" + "0" * 48)  # an imported pair's key is not a lease
    assert "not leased to you" in response.json()["data"][STATUS]
    assert count_rankings(running_app.engine) == 0


def test_password_reset_and_disabling_end_open_sessions_on_every_route(running_app):
    alice, bob = logged_in(running_app.url, "alice"), logged_in(running_app.url, "bob")
    assert alice.post("gradio_api/run/open_page", json={"data": [], "session_hash": "a"}).status_code == 200
    assert bob.get("config").status_code == 200
    with Session(running_app.engine) as s:
        reset_password(session=s, name="alice", password="a-brand-new-password")
        set_disabled(session=s, name="bob", disabled=True)
    running_app.clock.advance(RECHECK_SECONDS)  # each replica rereads an account at most once a second
    for http in (alice, bob):
        assert http.post("gradio_api/run/open_page", json={"data": [], "session_hash": "a"}).status_code in (
            401,
            403,
        )
        upload = http.post("gradio_api/upload", files={"files": ("x.txt", b"hello")})
        assert upload.status_code in (401, 403)
    assert count_rankings(running_app.engine) == 0


def test_a_log_in_stashed_before_a_reset_or_a_log_out_is_dead_although_never_used(running_app):
    """A session is dated from its log-in, not from its first request: log in, send nothing, reset the
    password; the stashed cookie opens nothing. The same for a log-out from another tab (every session issued
    before it ends)."""
    stashed = logged_in(running_app.url, "alice")  # no request after the log-in
    with Session(running_app.engine) as s:
        reset_password(session=s, name="alice", password=PASSWORDS["alice"])  # the same password, even
    running_app.clock.advance(RECHECK_SECONDS)
    assert stashed.get("config").status_code == 401
    opened = stashed.post("gradio_api/run/open_page", json={"data": [], "session_hash": "s"})
    assert opened.status_code in (401, 403)
    other_tab, leaving = logged_in(running_app.url, "bob"), logged_in(running_app.url, "bob")
    assert leaving.get("logout", follow_redirects=False).status_code == 302
    running_app.clock.advance(RECHECK_SECONDS)
    opened = other_tab.post("gradio_api/run/open_page", json={"data": [], "session_hash": "b"})
    assert opened.status_code in (401, 403)
    assert logged_in(running_app.url, "bob").get("config").status_code == 200  # a new log-in works
    assert count_rankings(running_app.engine) == 0


def test_labelers_cannot_upload_and_uploads_are_bounded(running_app):
    alice = logged_in(running_app.url, "alice")
    assert alice.post("gradio_api/upload", files={"files": ("x.txt", b"hello")}).status_code == 403
    admin = logged_in(running_app.url, "admin")
    assert admin.post("gradio_api/upload", files={"files": ("x.txt", b"hello")}).status_code == 200
    too_big = b"x" * (MAX_UPLOAD_BYTES + 1024)
    assert admin.post("gradio_api/upload", files={"files": ("big.txt", too_big)}).status_code == 413


def test_oversized_request_bodies_are_refused_before_they_are_read(running_app):
    page = asyncio.run(_page(running_app.url, "alice"))
    alice = logged_in(running_app.url, "alice")
    response = submit_raw(alice, page.token, comment="x" * (MAX_REQUEST_BYTES + 10))
    assert response.status_code == 413
    long_but_within = submit_raw(alice, page.token, comment="x" * 5000)
    assert "at most 2000" in long_but_within.json()["data"][STATUS]
    assert count_rankings(running_app.engine) == 0


def test_export_archives_are_served_to_admins_only(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    summary, preview = admin.predict(
        "jsonl", "all", False, "drop", 0, True, "equal", api_name="/admin_export"
    )
    assert "pairs by agreement: none" in summary and preview["data"] == []
    name = summary.split("(exports/")[1].rstrip(")")
    assert logged_in(running_app.url, "admin").get(f"exports/{name}").status_code == 200
    assert logged_in(running_app.url, "alice").get(f"exports/{name}").status_code == 403
    assert httpx.get(f"{running_app.url}exports/{name}").status_code == 403
    assert logged_in(running_app.url, "admin").get("exports/..%2Frankloop.db").status_code == 404


@pytest.mark.parametrize("data", [[], [{"token": "t"}], [{"token": "t"}, False]])
def test_malformed_calls_get_no_python_exception_text(running_app, data):
    alice = logged_in(running_app.url, "alice")
    response = alice.post("gradio_api/run/submit_ranking", json={"data": data, "session_hash": "m"})
    assert response.status_code != 200
    text = response.text
    assert "Traceback" not in text and "Error(" not in text and "index" not in text.lower(), text
    assert count_rankings(running_app.engine) == 0


def test_the_http_client_reports_a_refusal(running_app):
    async def flow() -> None:
        async with LabelingClient(running_app.url, "alice", PASSWORDS["alice"]) as client:
            await client.login()
            page = await client.next_set()
            assert page is not None
            with pytest.raises(LabelingError, match="neither ranked nor flagged"):
                await client.submit(page, [1, 2, None, None])

    asyncio.run(flow())
    assert count_rankings(running_app.engine) == 0


def test_the_admin_tabs_are_filled_when_an_admin_opens_the_page_and_only_then(running_app):
    def page_text(name: str) -> str:
        http = logged_in(running_app.url, name)
        response = http.post("gradio_api/run/admin_open_page", json={"data": [], "session_hash": name})
        return response.text

    assert "**Sets:** 6 (6 generated, 0 imported)" in page_text("admin")  # the dashboard, without a Refresh
    refused = page_text("alice")
    assert "**Sets:**" not in refused and "Admins only" in refused


def test_a_labelers_page_and_config_hold_no_admin_layout(running_app):
    """The page's HTML (its inline config and API description) and /config, for a labeler: the labeling tab's
    components and events only; an admin's hold the whole app."""
    alice, admin = logged_in(running_app.url, "alice"), logged_in(running_app.url, "admin")
    mine, full = alice.get("config").json(), admin.get("config").json()
    assert len(full["components"]) > 300 and len(mine["components"]) < 40
    names = {d.get("api_name") for d in mine["dependencies"]}
    assert "submit_ranking" in names and not [n for n in names if n and n.startswith("admin")]
    ids = {c["id"] for c in mine["components"]}
    assert all(i in ids for d in mine["dependencies"] for i in [*d["inputs"], *d["outputs"]])
    for html in (alice.get("").text, admin.get("").text):  # the labeling page, whoever opens it
        assert "dashboard-summary" not in html and "admin_dashboard" not in html and "submit_ranking" in html
    assert "dashboard-summary" in admin.get("admin").text
    refused = alice.get("admin")
    assert refused.status_code == 403 and "admin pages are for admins" in refused.text


def test_the_labeling_page_loads_a_third_of_the_components_or_fewer(running_app):
    """What every labeler's browser (and the server, per log-in) builds: the labeling page's config, against the
    whole app's. Printed, so the figure is in the test log."""
    from labeler.ui.app import build_ui
    from labeler.ui.deps import UIDeps

    config = build_ui(UIDeps(engine=running_app.engine, home=running_app.home)).config
    page, whole = len(config["page"][""]["components"]), len(config["components"])
    print(f"labeling page: {page} components; the whole app: {whole}")
    assert page * 3 < whole and page < 40
    html = logged_in(running_app.url, "alice").get("").text
    assert html.count('"id":') < 3 * page + 200  # the HTML carries the page's config alone


def test_the_api_description_is_for_admins_and_every_response_says_nosniff(running_app):
    anonymous = httpx.Client(base_url=running_app.url, timeout=30)
    alice, admin = logged_in(running_app.url, "alice"), logged_in(running_app.url, "admin")
    for path in (
        "openapi.json",
        "gradio_api/openapi.json",
        "gradio_api/info",
        "docs",
        "gradio_api/monitoring",
    ):
        assert anonymous.get(path).status_code == 403, path
        if path != "gradio_api/info":
            assert alice.get(path).status_code == 403, path
    full, labelers = admin.get("gradio_api/info").json(), alice.get("gradio_api/info").json()
    assert "/admin_dashboard" in full["named_endpoints"] and "/submit_ranking" in full["named_endpoints"]
    assert "/submit_ranking" in labelers["named_endpoints"] and "/undo_submit" in labelers["named_endpoints"]
    assert not [name for name in labelers["named_endpoints"] if name.startswith("/admin")]
    for response in (
        anonymous.get(""),
        alice.get("config"),
        alice.get("openapi.json"),
        anonymous.get("nothing"),
    ):
        assert response.headers.get("x-content-type-options") == "nosniff", response.url
