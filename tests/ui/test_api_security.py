"""Admin handlers are reachable through Gradio's API, so each one must refuse a labeler on the server."""

from dataclasses import fields

import pytest
from gradio_client import Client
from sqlmodel import Session, func, select

from labeler.tables import Guideline, PolicyVersion, User
from labeler.ui.forms import HIDDEN
from rlhf.reward import RewardConfig
from tests.ui.conftest import PASSWORDS

ADMIN_CALLS = {
    "/admin_dashboard": (),
    "/admin_user_add": ("mallory", "admin"),
    "/admin_user_disable": ("bob", "labeler"),
    "/admin_user_reset": ("bob", "labeler"),
    "/admin_save_guidelines": ("be evil",),
    "/admin_labels_needed": (5, True),
    "/admin_make_current": (0,),
    "/admin_compare": ("hi", 0, 0),
    "/admin_export": ("jsonl", "all", False, "drop", 0, True),
    "/admin_jobs": (None,),
    "/admin_launch_reward": tuple(
        "" if f.name == "heldout_sources" else f.default for f in fields(RewardConfig) if f.name not in HIDDEN
    ),
    "/admin_cancel_job": (1,),
}


def snapshot(engine):
    with Session(engine) as s:
        users = [
            (u.name, u.role, u.disabled, u.password_hash) for u in s.exec(select(User).order_by(User.id))
        ]
        return (
            users,
            s.exec(select(func.count(Guideline.id))).one(),
            [(p.version, p.is_current) for p in s.exec(select(PolicyVersion))],
        )


def test_labeler_is_refused_by_every_admin_endpoint_and_nothing_changes(running_app):
    client = Client(running_app.url, auth=("alice", PASSWORDS["alice"]), verbose=False)
    before = snapshot(running_app.engine)
    for endpoint, args in ADMIN_CALLS.items():
        with pytest.raises(Exception, match="Admins only"):
            client.predict(*args, api_name=endpoint)
    assert snapshot(running_app.engine) == before
    assert not (running_app.home / "exports").exists()


def test_admin_can_call_the_same_endpoint(running_app):
    client = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    summary, _, _ = client.predict(api_name="/admin_dashboard")
    assert "Rankings:** 0" in summary


def test_wrong_password_cannot_connect(running_app):
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError/HTTP error
        Client(running_app.url, auth=("alice", "wrong-password"), verbose=False)
