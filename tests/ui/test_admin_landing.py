"""Admins land on the dashboard and lease nothing by opening the app; "Start labeling" leases a set, and pressing
it again keeps the set (and its choices) on screen. A labeler's page still opens on a set."""

from gradio_client import Client
from load_client import page_from_outputs
from sqlmodel import Session, select

from labeler.store.tables import Assignment, User
from tests.ui.conftest import PASSWORDS


def leases_of(engine, name: str) -> int:
    with Session(engine) as s:
        user = s.exec(select(User).where(User.name == name)).one()
        return len(s.exec(select(Assignment).where(Assignment.user_id == user.id)).all())


def test_admin_opens_on_the_dashboard_and_leases_only_from_the_label_tab(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    opened = admin.predict(api_name="/open_page")
    assert page_from_outputs(list(opened)) is None and leases_of(running_app.engine, "admin") == 0
    assert any(isinstance(v, str) and "press Start labeling" in v for v in opened)
    shown = admin.predict({"token": "", "ranks": [], "flags": []}, api_name="/start_labeling")
    page = page_from_outputs(list(shown))
    assert page is not None and leases_of(running_app.engine, "admin") == 1
    again = admin.predict(
        {"token": page.token, "ranks": [1, None, None, None], "flags": []}, api_name="/start_labeling"
    )
    assert (
        page_from_outputs(list(again)) is None or page_from_outputs(list(again)) == page
    )  # nothing replaced
    assert leases_of(running_app.engine, "admin") == 1

    alice = Client(running_app.url, auth=("alice", PASSWORDS["alice"]), verbose=False)
    assert page_from_outputs(list(alice.predict(api_name="/open_page"))) is not None
    assert leases_of(running_app.engine, "alice") == 1
