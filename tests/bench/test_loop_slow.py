"""bench/loop.py on the embedded default, end to end at a small size: two rounds of generate -> simulated labelers
rank -> reward model -> PPO, the second continuing the first's reward model as a round does (on the new sets and
again on those it met). Slow (the embedded model generates and trains on the CPU, about 2.5 min): `make test-slow`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_two_small_rounds_continue_the_reward_model_with_replay() -> None:
    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    command = [sys.executable, str(ROOT / "bench" / "loop.py"), "--rounds", "2", "--sets", "8", "--heldout-prompts", "4", "--eval-samples", "1", "--max-new-tokens", "8", "--ppo-batch-prompts", "2"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    assert figures["rounds"] == "2" and figures["reward"] == "model"
    for key in ("pass_rate_v0", "pass_rate_last", "win_rate_last", "reward_accuracy_last"):
        assert 0.0 <= float(figures[key]) <= 1.0
    # round 1 trains a new reward model; round 2 continues it on its 8 new sets and again on those r1 trained on
    trained = [
        (int(g), int(r), int(s))
        for g, r, s in re.findall(
            r"train_groups=(\d+) replayed_sets=(\d+) seen_sets=(\d+)", done.stdout + done.stderr
        )
    ]
    assert len(trained) == 2 and trained[0][1] == 0 and trained[0][2] == 8
    assert trained[1][1] == trained[0][0] and trained[1][2] == 16 and trained[1][0] > trained[1][1]
