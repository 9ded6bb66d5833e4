"""Admin handlers are reachable through Gradio's API, so each one must refuse a labeler on the server."""

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from sqlmodel import Session, func, select

from labeler.store.tables import ApiToken, Constitution, Guideline, Job, PolicyVersion, Setting, User, Webhook
from labeler.ui.forms import ROUND_DEFAULT_PRESET, config_form
from rlhf.train.configs import JOB_KINDS, job_config
from tests.ui.conftest import PASSWORDS

ADMIN_CALLS = {
    "/admin_open_page": (),
    "/admin_dashboard": (),
    "/admin_user_add": ("mallory", "admin"),
    "/admin_user_disable": ("bob", "labeler"),
    "/admin_user_reset": ("bob", "labeler"),
    "/admin_save_guidelines": ("be evil",),
    "/admin_save_constitution": ("Be evil.", "{prompt} {answer}", "{prompt} {answer} {critique}"),
    "/admin_revision_share": (1.0,),
    "/admin_conversations": ("labeler", 5, "fresh", ""),
    "/admin_conversation_tree": (1,),
    "/admin_stop_branch": (1,),
    "/admin_add_judge": (
        "mallory-bot",
        "rules",
        "fewer than 3 words",
        "base",
        "{principles}{prompt}{first}{second}",
    ),
    "/admin_judge_prompt": ("mallory-bot", "{principles}{prompt}{first}{second}"),
    "/admin_disable_judge": ("mallory-bot",),
    "/admin_enable_judge": ("mallory-bot",),
    "/admin_suggestions": ("mallory-bot", 1.0),
    "/admin_labels_needed": (5, True),
    "/admin_make_current": (0,),
    "/admin_compare": ("hi", 0, 0),
    "/admin_stored_compare": (0, 0),
    "/admin_export": ("jsonl", "all", False, "drop", 0, True, "equal"),
    "/admin_export_preview": ("all", False, "drop", 0, "equal"),
    "/admin_jobs": (None,),
    "/admin_policy_samples": (0,),
    "/admin_cancel_job": (1,),
    "/admin_gold_rate": (0.5,),
    "/admin_gold_mark": (1, "1,2,3,4", False),
    "/admin_selection": ("uncertainty", 0.5, 4, 10),
    "/admin_preset_round": (ROUND_DEFAULT_PRESET,),
    "/admin_browse_prompts": ("", "all"),
    "/admin_browse_sets": ("", None, False, False),
    "/admin_browse_set": (1,),
    "/admin_token_add": ("alice", "mine now"),
    "/admin_token_revoke": (1,),
    "/admin_webhook_add": ("http://127.0.0.1:1/steal", ["job.succeeded"], 100),
    "/admin_webhook_disable": (1,),
    "/admin_webhook_enable": (1,),
}


def launch_args(config_cls) -> tuple:
    """Every field of the stage's admin form at its default, as the page would send it."""
    with gr.Blocks():
        return tuple(c.value for c in config_form(config_cls).values())


for _kind in JOB_KINDS:
    ADMIN_CALLS[f"/admin_launch_{_kind}"] = launch_args(job_config(_kind))
    ADMIN_CALLS[f"/admin_estimate_{_kind}"] = launch_args(job_config(_kind))


def snapshot(engine):
    with Session(engine) as s:
        users = [
            (u.name, u.role, u.disabled, u.password_hash) for u in s.exec(select(User).order_by(User.id))
        ]
        return (
            users,
            s.exec(select(func.count(Guideline.id))).one(),
            s.exec(select(func.count(Constitution.id))).one(),
            [(p.version, p.is_current) for p in s.exec(select(PolicyVersion))],
            s.exec(select(func.count(Job.id))).one(),
            [(x.key, x.value) for x in s.exec(select(Setting))],
            [(t.id, t.revoked_at) for t in s.exec(select(ApiToken))],
            [(h.id, h.active) for h in s.exec(select(Webhook))],
        )


def test_labeler_is_refused_by_every_admin_endpoint_and_nothing_changes(running_app):
    """Called as a script would, by name over HTTP (a labeler cannot read the API's description, so no
    gradio_client: tests/ui/test_trust.py)."""
    alice = httpx.Client(base_url=running_app.url, timeout=60)
    assert alice.post("login", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 200
    before = snapshot(running_app.engine)
    for endpoint, args in ADMIN_CALLS.items():
        response = alice.post(f"gradio_api/run{endpoint}", json={"data": list(args), "session_hash": "x"})
        assert "Admins only" in response.text, (endpoint, response.status_code, response.text[:200])
    assert snapshot(running_app.engine) == before
    assert not (running_app.home / "exports").exists()


def test_admin_can_call_the_same_endpoint(running_app):
    client = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    summary, *_ = client.predict(api_name="/admin_dashboard")
    assert "Rankings:** 0" in summary
    assert "blank because human-evaluation mixing is off" in summary  # the empty win-rate says why
    estimate = client.predict(*ADMIN_CALLS["/admin_estimate_round"], api_name="/admin_estimate_round")
    assert (
        estimate.startswith("About ") and "DPO" in estimate and "KL budget" in estimate
    )  # the round's default


def test_an_admin_makes_a_token_on_the_page_that_works_in_the_api_until_revoked(running_app):
    client = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    said, table = client.predict("alice", "survey tool", api_name="/admin_token_add")
    secret = said.rsplit("`", 2)[-2]
    assert secret.startswith("rlk_") and table["data"][0][1:4] == ["alice", "labeler", "survey tool"]
    api = httpx.Client(base_url=running_app.url + "api/v1", headers={"Authorization": f"Bearer {secret}"})
    assert api.get("/me").json()["name"] == "alice"
    said, table = client.predict(table["data"][0][0], api_name="/admin_token_revoke")
    assert "Revoked" in said and table["data"][0][7].startswith("revoked") and table["data"][0][8] == 1
    assert api.get("/me").status_code == 401


def test_a_launch_out_of_range_is_refused_with_the_fields_label_and_starts_nothing(running_app):
    from dataclasses import fields

    client = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    names = [f.name for f in fields(job_config("round")) if f.name in config_form_names("round")]
    args = list(ADMIN_CALLS["/admin_launch_round"])
    args[names.index("reward_learning_rate")] = 0
    before = snapshot(running_app.engine)
    with pytest.raises(Exception, match="Reward learning rate is 0: it must be more than 0 and at most 1"):
        client.predict(*args, api_name="/admin_launch_round")
    estimate = client.predict(*args, api_name="/admin_estimate_round")
    assert "Check the form" in estimate and "Reward learning rate" in estimate
    assert snapshot(running_app.engine) == before  # no job row


def config_form_names(kind: str) -> list[str]:
    with gr.Blocks():
        return list(config_form(job_config(kind)))


def test_wrong_password_cannot_connect(running_app):
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError/HTTP error
        Client(running_app.url, auth=("alice", "wrong-password"), verbose=False)


def test_admin_compares_two_versions_side_by_side(running_app, tmp_path):
    from tests.models.test_generation import _save_adapter

    with Session(running_app.engine) as s:
        v0 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 0)).one()
        s.add(
            PolicyVersion(
                version=1, base_model="tiny", adapter_path=_save_adapter(tmp_path / "v1", 1), parent_id=v0.id
            )
        )
        s.commit()
    client = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    left, right = client.predict("Say hello.", 0, 1, api_name="/admin_compare")
    assert "<strong>v0</strong>" in left and "<strong>v1</strong>" in right
    assert left.split("</p>", 1)[1] != right.split("</p>", 1)[1]  # the adapter changes the answer
    again, _ = client.predict("Say hello.", 0, 0, api_name="/admin_compare")
    assert again == left  # greedy, and v1 did not stay active
