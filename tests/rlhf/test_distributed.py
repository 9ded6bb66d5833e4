"""Reward training as two processes (torchrun, DDP over gloo on CPU; `accelerate launch --cpu` starts one process
here): both take the same steps, end with the same weights (their held-out figures are equal), and the model
is stored and registered once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session, select

from labeler.db import make_engine
from labeler.tables import RewardModel
from tests.rlhf.ppo_helpers import ppo_store
from tests.rlhf.test_dpo import rank_some_sets

REPO = Path(__file__).resolve().parents[2]


def test_two_processes_train_one_reward_model(tmp_path):
    url, checkpoint = ppo_store(tmp_path)
    rank_some_sets(url)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rlhf.reward",
           "--home", str(tmp_path), "--db", url, "--model", checkpoint, "--epochs", "1", "--max_length", "48",
           "--device", "cpu", "--batch_sets", "2"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = re.findall(r"reward r1 saved to \S+: (accuracy=\S+ mean_margin=\S+ loss=\S+)", done.stdout)
    assert len(summaries) == 2 and summaries[0] == summaries[1], summaries  # the two processes agree
    with Session(make_engine(url)) as s:
        assert [m.name for m in s.exec(select(RewardModel))] == ["r1"]
