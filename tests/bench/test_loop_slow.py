"""bench/loop.py on the embedded default, end to end at a small size: two PPO rounds of generate -> simulated
labelers rank -> reward model -> PPO -> gate, the second continuing the first's reward model as a round does (on
the new sets and again on those it met); the gate, with far fewer held-out pairs than it needs, switches to
neither. Slow (the embedded model generates and trains on the CPU, about 2.5 min): `make test-slow`."""

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
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")  # not the repository's
    command = [sys.executable, str(ROOT / "bench" / "loop.py"), "--rounds", "2", "--sets", "8", "--heldout-prompts", "4", "--eval-samples", "1", "--max-new-tokens", "8", "--optimizer", "ppo", "--ppo-batch-prompts", "2", "--ppo-steps", "2", "--reward-epochs", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    assert figures["rounds"] == "2" and figures["reward"] == "model" and figures["optimizer"] == "ppo"
    assert figures["switched"] == "0/2", "8 sets a round give the gate far fewer than 80 held-out pairs"
    assert 0.0 <= float(figures["win_rate_mean"]) <= 1.0 and figures["pass_gain_mean"] == "0.000"
    # round 1 trains a new reward model; round 2 continues it on its 8 new sets and again on those r1 trained on
    trained = [
        (int(g), int(r), int(s))
        for g, r, s in re.findall(
            r"train_groups=(\d+) replayed_sets=(\d+) seen_sets=(\d+)", done.stdout + done.stderr
        )
    ]
    assert len(trained) == 2 and trained[0][1] == 0 and trained[0][2] == 8
    assert trained[1][1] == trained[0][0] and trained[1][2] == 16 and trained[1][0] > trained[1][1]
