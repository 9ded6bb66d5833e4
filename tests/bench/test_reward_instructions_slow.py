"""bench/reward_instructions.py on the embedded default, end to end: v0 writes a few sets through the pre-generation
worker, the loop's labelers rank them, and the bench reports how alike v0's held-out answers are (`--arms ""`).
Slow (the embedded model generates on the CPU): `make test-slow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest
from simulate import PREFERENCES

from labeler.io.instruction_prompts import stored_instructions

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_bench_reports_how_alike_v0s_answers_are(tmp_path: Path) -> None:
    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")  # not the repository's
    command = [sys.executable, str(ROOT / "bench" / "reward_instructions.py"), "--arms", "", "--sets", "4", "--heldout-prompts", "4", "--keep", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    result = done.stdout.strip().splitlines()[-1]
    figures = dict(item.split("=", 1) for item in result.removeprefix("RESULT ").split())
    assert set(figures) == {"v0_alike_sets", "v0_tied_pairs"}
    answers = json.loads((tmp_path / "home" / "heldout_answers.json").read_text())
    assert len(answers) == 4 and all(len(a["texts"]) == 4 for a in answers)
    # the figures are those answers' shares, by the labelers' hidden preference
    judge = PREFERENCES["instructions"]
    scores = [
        [
            judge(t, f, stored_instructions(a["instructions"]))
            for t, f in zip(a["texts"], a["finish"], strict=True)
        ]
        for a in answers
    ]
    alike = sum(len(set(s)) == 1 for s in scores) / len(scores)
    tied = sum(s[i] == s[j] for s in scores for i, j in combinations(range(4), 2)) / (6 * len(scores))
    assert float(figures["v0_alike_sets"]) == pytest.approx(alike, abs=1e-3)
    assert float(figures["v0_tied_pairs"]) == pytest.approx(tied, abs=1e-3)
