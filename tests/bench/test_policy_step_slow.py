"""bench/policy_step.py at its smallest: one rollout of each arm (our PPO with GAE, our group advantages, trl's
GRPOTrainer) on the rule reward, each in its own process, then their held-out answers scored; one RESULT line per
arm. Slow (three trainings of the embedded model on the CPU): `make test-slow`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_each_arm_trains_on_the_same_answers_and_reports_its_cost_and_gain() -> None:
    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")
    command = [sys.executable, str(ROOT / "bench" / "policy_step.py"), "--answers", "32", "--heldout-prompts", "2", "--eval-samples", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    arms = [dict(item.split("=", 1) for item in line.split()[1:]) for line in results]
    assert [a["arm"] for a in arms] == ["ppo-gae", "ppo-group", "trl-grpo"]
    for arm in arms:
        assert arm["answers"] == "32" and float(arm["seconds_per_100"]) > 0 and float(arm["peak_gib"]) > 0.1
        assert 0.0 <= float(arm["pass_rate"]) <= 1.0 and float(arm["kl_heldout"]) >= 0.0
