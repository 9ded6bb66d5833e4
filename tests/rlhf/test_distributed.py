"""Training stages as two data-parallel processes on CPU (DDP over gloo, no GPU needed), started the way
`rankloop serve --launcher accelerate --processes 2` starts admin jobs: the job runner with an accelerate
launcher. Each stage checks that the processes end with the same weights before the main process alone saves and
registers the result; PPO with two processes lands close to one process given the same global batch."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlmodel import Session, select

from labeler.store.db import make_engine
from labeler.store.tables import Job, PolicyVersion, RewardModel
from rlhf.serve.jobs import JobRunner, Launcher
from tests.rlhf.ppo_helpers import ppo_store, saved_adapter
from tests.rlhf.test_dpo import rank_some_sets

REPO = Path(__file__).resolve().parents[2]
TWO = Launcher("accelerate", processes=2)
AGREE = "trained weights agree on all 2 processes"
PPO = {
    "steps": 3, "batch_prompts": 4, "minibatch": 4, "ppo_epochs": 1, "temperature": 0.0, "max_new_tokens": 6,
    "learning_rate": 5e-3, "kl_coef": 0.01, "adaptive_kl": False, "lora_r": 4, "lora_alpha": 8, "device": "cpu",
    "sample_prompts": 1, "stop_kl": 100.0,
}  # fmt: skip


def run_job(home: Path, url: str, kind: str, params: dict, launcher: Launcher = TWO) -> str:
    """Start a job through the runner, wait for it, and return its log (it must have succeeded)."""
    runner = JobRunner(engine=make_engine(url), db_url=url, home=home, launcher=launcher)
    job_id = runner.start(kind, params)
    status = runner.wait(job_id, timeout=600)
    log = runner.log_path(job_id).read_text()
    assert status == "succeeded", log[-4000:]
    return log


def test_the_accelerate_launcher_asks_for_several_processes():
    head = TWO.head("rlhf.train.ppo")
    assert head[:3] == [sys.executable, "-m", "accelerate.commands.launch"] and head[-2:] == [
        "-m",
        "rlhf.train.ppo",
    ]
    assert head[head.index("--num_processes") + 1] == "2" and "--multi_gpu" in head
    assert Launcher().head("rlhf.train.ppo") == [sys.executable, "-m", "rlhf.train.ppo"]
    configured = Launcher("accelerate", config_file="zero2.yaml").head("rlhf.train.reward")
    assert (
        configured[configured.index("--config_file") + 1] == "zero2.yaml"
        and "--mixed_precision" not in configured
    )


@pytest.fixture
def ranked_store(tmp_path):
    url, checkpoint = ppo_store(tmp_path)
    rank_some_sets(url)
    return tmp_path, url, checkpoint


def test_two_processes_train_one_reward_model(ranked_store):
    home, url, checkpoint = ranked_store
    params = {"model": checkpoint, "epochs": 1, "max_length": 48, "device": "cpu", "batch_sets": 2}
    log = run_job(home, url, "reward", params)
    summaries = re.findall(r"reward r1 saved to \S+: (accuracy=\S+ mean_margin=\S+ loss=\S+)", log)
    assert len(summaries) == 2 and summaries[0] == summaries[1], summaries  # same held-out figures on both
    with Session(make_engine(url)) as s:
        assert [m.name for m in s.exec(select(RewardModel))] == ["r1"]
        assert s.exec(select(Job)).one().status == "succeeded"


def lora_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in saved_adapter(folder).items() if "lora_" in k}


def test_ppo_on_two_processes_matches_one_process_with_the_same_global_batch(ranked_store):
    home, url, checkpoint = ranked_store
    reward = [sys.executable, "-m", "rlhf.train.reward", "--home", str(home), "--db", url, "--model", checkpoint,
              "--epochs", "1", "--max_length", "48", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(reward, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    twin = home / "twin"  # the same store, to train once with one process
    twin.mkdir()
    with sqlite3.connect(home / "rankloop.db") as source, sqlite3.connect(twin / "rankloop.db") as copy:
        source.backup(copy)  # WAL included
    twin_url = f"sqlite:///{twin / 'rankloop.db'}"

    log = run_job(home, url, "ppo", PPO)
    assert AGREE in log
    run_job(twin, twin_url, "ppo", PPO, launcher=Launcher())

    with Session(make_engine(url)) as s:
        versions = {v.version: v for v in s.exec(select(PolicyVersion))}
    assert sorted(versions) == [0, 1] and versions[1].is_current  # registered once, by the main process
    assert versions[1].metrics["processes"] == 2
    two, one = lora_weights(home / "models" / "policy-v1"), lora_weights(twin / "models" / "policy-v1")
    assert two.keys() == one.keys()
    # LoRA's B starts at zero, so B holds what training moved; the two runs moved it alike
    moved = torch.cat([one[k].flatten() for k in one if "lora_B" in k])
    apart = torch.cat([(two[k] - one[k]).flatten() for k in one if "lora_B" in k])
    assert moved.norm() > 0
    assert apart.norm() / moved.norm() < 0.01, (apart.norm() / moved.norm()).item()  # measured: 2e-6


@pytest.mark.parametrize("trainer", ["sets", "trl"])
def test_dpo_on_two_processes_registers_one_version(ranked_store, trainer):
    home, url, _ = ranked_store
    params = {"epochs": 1, "batch_size": 2, "batch_sets": 2, "max_length": 64, "lora_r": 4, "lora_alpha": 8,
              "device": "cpu", "sample_prompts": 1, "max_new_tokens": 4, "trainer": trainer,
              "learning_rate": 1e-2, "kl_budget": 1e-3, "kl_budget_prompts": 5}  # fmt: skip
    log = run_job(home, url, "dpo", params)
    assert AGREE in log  # each process measured its share of the budget's prompts; all scaled alike
    with Session(make_engine(url)) as s:
        versions = {v.version: v for v in s.exec(select(PolicyVersion))}
    assert sorted(versions) == [0, 1] and versions[1].metrics["processes"] == 2
    fit = versions[1].metrics["kl_budget"]
    assert fit["prompts"] == 5 and fit["kl_before"] > 1e-3 and fit["scale"] < 1
    assert (home / "models" / "policy-v1" / "adapter_model.safetensors").exists()
