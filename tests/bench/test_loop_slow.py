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


def test_a_small_dpo_round_with_edits_and_revisions_reports_them() -> None:
    """One DPO round of 8 sets where labeler a repairs its best answer on every set and every set gets the model's
    revision: the SEED and RESULT lines count both, with the unseen kinds' rates v0 > last."""
    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")
    command = [sys.executable, str(ROOT / "bench" / "loop.py"), "--rounds", "1", "--sets", "8", "--heldout-prompts", "4", "--eval-samples", "1", "--max-new-tokens", "8", "--edits", "1", "--revisions", "1", "--dpo-epochs", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    assert figures["optimizer"] == "dpo" and figures["edits"] == "1" and figures["revisions"] == "1"
    assert int(figures["revisions_made"]) == 8  # one a set
    assert int(figures["edits_made"]) > 0  # 8-token answers cut at the limit always need a repair
    assert re.fullmatch(r"\d\.\d\d>\d\.\d\d", figures["lowercase"])


def test_a_small_round_with_a_rule_judge_and_half_the_human_labels(tmp_path: Path) -> None:
    """One DPO round of 8 sets of 3 answers (`--answers 3`) where the app's rule judge (`--judge-rule` twice:
    instructions, a finished answer) ranks every set and each simulated labeler ranks half of them: the RESULT line
    names the judge and counts the human labels (2 labelers x 4), and the kept store holds the judge's checks and
    its 8 rankings of 3 answers."""
    from sqlmodel import Session, select

    from labeler.store.db import make_engine
    from labeler.store.tables import Judge, Ranking, User

    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")
    command = [sys.executable, str(ROOT / "bench" / "loop.py"), "--rounds", "1", "--sets", "8", "--heldout-prompts", "4", "--eval-samples", "1", "--max-new-tokens", "8", "--judge", "rules", "--judge-rule", "instructions", "--judge-rule", r"must match: [.!?]\s*$", "--human-share", "0.5", "--dpo-epochs", "1", "--answers", "3", "--keep", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    assert figures["judge"] == "rules" and figures["human_share"] == "0.5" and figures["answers"] == "3"
    assert figures["human_labels"] == "8"
    assert 0.5 < float(figures["judge_agreement"]) <= 1.0  # the rule judge reads the same instructions
    engine = make_engine(f"sqlite:///{tmp_path / 'seed-0' / 'home' / 'loop.db'}")
    with Session(engine) as s:
        judged = s.exec(select(Ranking).join(User).where(User.role == "judge")).all()
        [judge] = s.exec(select(Judge)).all()
    assert judge.config["rules"] == "instructions\nmust match: [.!?]\\s*$"  # both checks, one a line
    assert len(judged) == 8 and all(
        not r.skipped and len(r.ranks) == 3 for r in judged
    )  # all carry instructions; three answers a set (--answers 3)


def test_two_rounds_of_conversations_label_second_turns(tmp_path: Path) -> None:
    """With `--turns 2`, round 1's decided sets continue with their simulated follow-ups, and round 2's labelers
    rank second-turn sets generated from the chosen answers."""
    from sqlmodel import Session, select

    from labeler.store.db import make_engine
    from labeler.store.tables import CompletionSet, Prompt

    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")
    command = [sys.executable, str(ROOT / "bench" / "loop.py"), "--rounds", "2", "--sets", "8", "--heldout-prompts", "4", "--eval-samples", "1", "--max-new-tokens", "8", "--turns", "2", "--dpo-epochs", "1", "--switch", "auto", "--keep", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    assert figures["turns"] == "2" and int(figures["later_turn_sets"]) > 0
    v0, last = (float(x) for x in figures["turn2_pass"].split(">"))  # held-out second turns, v0 > last
    assert 0.0 <= v0 <= 1.0 and 0.0 <= last <= 1.0
    engine = make_engine(f"sqlite:///{tmp_path / 'seed-0' / 'home' / 'loop.db'}")
    with Session(engine) as s:
        second = s.exec(select(Prompt).join(CompletionSet).where(Prompt.turn == 2)).first()
        assert second is not None and second.messages[-1]["content"].startswith("Now say that again.")
        assert second.instructions  # the follow-up's instruction, what the labelers check at that turn
