"""The job runner starts real stage processes against a SQLite file."""

import os
import signal
import time

import pytest
from sqlmodel import Session, select

from labeler.store.db import make_engine
from labeler.store.tables import Job, RewardModel
from rlhf.serve.jobs import JobError, JobRunner, write_job_config
from rlhf.train.configs import RoundConfig
from rlhf.train.stage import parse_config
from tests.rlhf.synthetic import synthetic_store

QUICK = {"epochs": 2, "learning_rate": 3e-3, "max_length": 64, "device": "cpu"}


def runner_for(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=40)
    return JobRunner(engine=make_engine(url), db_url=url, home=tmp_path), checkpoint


def job(runner, job_id):
    with Session(runner.engine) as s:
        return s.get(Job, job_id)


def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_job_config_keeps_every_value_none_included(tmp_path):
    """A field cleared in a form (None where the default is a number) reaches the stage as None, not its default."""
    params = {
        "dpo_kl_budget": None,
        "ppo_no_eos_penalty": None,
        "reward_continue_from": None,
        "dpo_beta": 0.3,
    }
    path = write_job_config(tmp_path / "job-1.yaml", params)
    config, job_id = parse_config(RoundConfig, ["--config", str(path), "--job-id", "1"])
    assert job_id == 1 and config.dpo_kl_budget is None and config.ppo_no_eos_penalty is None
    assert config.reward_continue_from is None and config.dpo_beta == 0.3
    assert RoundConfig().dpo_kl_budget is not None and RoundConfig().reward_continue_from == "latest"


def test_reward_job_runs_in_its_own_process_and_records_metrics(tmp_path):
    runner, checkpoint = runner_for(tmp_path)
    job_id = runner.start("reward", {**QUICK, "model": checkpoint})
    with pytest.raises(JobError, match="already"):
        runner.start("reward", {**QUICK, "model": checkpoint})
    assert runner.wait(job_id, timeout=300) == "succeeded", job(runner, job_id).log_tail
    row = job(runner, job_id)
    assert row.progress == 1.0 and row.pid != os.getpid()
    assert any("loss" in m for m in row.metrics) and row.params["result"]["name"] == "r1"
    with Session(runner.engine) as s:
        assert s.exec(select(RewardModel)).one().job_id == job_id


def test_cancel_stops_the_process(tmp_path):
    runner, checkpoint = runner_for(tmp_path)
    job_id = runner.start("reward", {**QUICK, "model": checkpoint, "epochs": 500})
    assert wait_for(lambda: job(runner, job_id).progress > 0), job(runner, job_id).log_tail
    runner.cancel(job_id)
    assert job(runner, job_id).status == "cancelled"
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(job(runner, job_id).pid, 0)


def test_killed_process_is_marked_failed_with_its_exit_code(tmp_path):
    runner, checkpoint = runner_for(tmp_path)
    job_id = runner.start("reward", {**QUICK, "model": checkpoint, "epochs": 500})
    assert wait_for(lambda: job(runner, job_id).status == "running")
    os.kill(job(runner, job_id).pid, signal.SIGKILL)
    assert runner.wait(job_id, timeout=30) == "failed"
    assert "code -9" in job(runner, job_id).error
    with Session(runner.engine) as s:
        assert s.exec(select(RewardModel)).first() is None
