"""Every admin launch form starts its job through the real job runner, and the job succeeds on the tiny model:
reward, then PPO against it (v1), DPO (v2), and a whole round (reward model + PPO, v3), each launched as an
admin through the app's API with the form's values as the page sends them."""

from __future__ import annotations

import html
import time

import gradio as gr
from gradio_client import Client
from sqlmodel import Session, col, select

from labeler.store.db import make_engine
from labeler.store.tables import Job, PolicyVersion, RewardModel, TrainingRound
from labeler.store.users import add_user
from labeler.ui.app import build_ui, launch
from labeler.ui.deps import UIDeps
from labeler.ui.forms import config_form
from labeler.ui.job_view import PANEL_SLOTS, clean_log
from rlhf.serve.jobs import JobRunner
from rlhf.train.configs import JOB_KINDS, job_config
from tests.rlhf.ppo_helpers import ppo_store
from tests.rlhf.test_dpo import rank_some_sets
from tests.ui.conftest import free_port

TINY = {
    "reward": {"epochs": 1, "max_length": 48, "batch_sets": 2},
    "ppo": {"steps": 1, "batch_prompts": 4, "minibatch": 2, "max_new_tokens": 4, "sample_prompts": 1},
    "dpo": {"batch_size": 2, "max_length": 48, "sample_prompts": 1, "max_new_tokens": 4},
    "sft": {"batch_size": 2, "max_length": 48, "sample_prompts": 1, "max_new_tokens": 4},
    # a PPO round (DPO is the round's default), switched whatever its gate says of a store this small
    "round": {"optimizer": "ppo", "switch": "auto", "reward_epochs": 1, "reward_max_length": 48, "ppo_steps": 1,
              "ppo_batch_prompts": 4, "ppo_max_new_tokens": 4},
}  # fmt: skip


def form_args(kind: str, **values) -> list:
    """The form's fields in order, at their defaults except `values`, as the page sends them."""
    with gr.Blocks():
        form = config_form(job_config(kind))
    unknown = set(values) - set(form)
    assert not unknown, f"not on the {kind} form: {unknown}"
    return [values.get(name, component.value) for name, component in form.items()]


def wait_for_job(engine, job_id: int, timeout: float = 600) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as s:
            job = s.get(Job, job_id)
            assert job is not None
            if job.status not in ("queued", "running"):
                return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_every_launch_form_runs_its_job_to_success(tmp_path):
    url, checkpoint = ppo_store(tmp_path)
    rank_some_sets(url)
    engine = make_engine(url)
    with Session(engine) as s:
        add_user(session=s, name="admin", password="admin-password-1", role="admin")
    runner = JobRunner(engine=engine, db_url=url, home=tmp_path)
    deps = UIDeps(engine=engine, home=tmp_path, runner=runner)
    port = free_port()
    demo = launch(build_ui(deps), deps, port=port, block=False)
    try:
        admin = Client(f"http://127.0.0.1:{port}/", auth=("admin", "admin-password-1"), verbose=False)
        assert set(TINY) == set(JOB_KINDS)
        for kind in ("reward", "ppo", "dpo", "sft", "round"):
            extra = {"model": checkpoint} if kind == "reward" else {}
            message, job_id = admin.predict(
                *form_args(kind, **TINY[kind], **extra), api_name=f"/admin_launch_{kind}"
            )
            assert message.startswith(f"Started {kind} job {job_id}. About "), message
            job = wait_for_job(engine, int(job_id))
            assert job.status == "succeeded", (kind, job.error, runner.log_path(job.id).read_text()[-3000:])
            # what the training tab shows of the finished job: its status, the reward model's evaluation with
            # its split, and the log ending at its newest line
            runner.poll()
            shown = admin.predict(job.id, api_name="/admin_jobs")
            progress, evaluation, log = shown[0], shown[1], shown[2 + PANEL_SLOTS + 1]
            assert f"Job {job.id} ({kind}) · succeeded in" in progress
            assert evaluation.startswith("**Evaluation (") == (kind in ("reward", "sft")), evaluation
            newest = clean_log(runner.log_path(job.id).read_text()).splitlines()[-1]
            assert log.endswith(html.escape(newest) + "</pre></div>")
        # the jobs that ran set the rates of the next estimates: PPO's from the round, the newest to run it
        estimate = admin.predict(*form_args("ppo", **TINY["ppo"]), api_name="/admin_estimate_ppo")
        assert estimate.startswith("About ") and estimate.endswith(f"(rate of job {job.id}).")
    finally:
        demo.close()
        runner.stop()
    with Session(engine) as s:
        versions = s.exec(select(PolicyVersion).order_by(col(PolicyVersion.version))).all()
        # the SFT job's v3 stays a candidate (its default); the round goes on from v2 and makes v4 current
        assert [v.version for v in versions] == [0, 1, 2, 3, 4] and versions[-1].is_current
        assert not versions[3].is_current and versions[3].metrics["optimizer"] == "sft"
        # no set ranked since the reward job's r1: the round continues it by default, so its PPO uses r1 as is
        [r1] = s.exec(select(RewardModel)).all()
        [round_] = s.exec(select(TrainingRound)).all()
        assert round_.new_version_id == versions[-1].id and round_.reward_model_id == r1.id
