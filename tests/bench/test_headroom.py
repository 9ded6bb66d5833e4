"""bench/headroom.py: which pairs of a labeled set the hidden preference decides, and best-of-n's pass rate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from headroom import best_of, kl_bound, pair_kinds, trained_pairs

from labeler.io.instruction_prompts import InstructionPrompt
from labeler.labels.instructions import Instruction
from models.generation import Completion

ROOT = Path(__file__).resolve().parents[2]


def answers(*texts: str) -> list[Completion]:
    return [Completion(text, 4, "eos" if text.endswith(".") else "length") for text in texts]


def test_pairs_are_sorted_by_what_separates_them_and_best_of_n_takes_the_preferred_answer():
    prompt = InstructionPrompt(
        [{"role": "user", "content": "Say it."}], [Instruction("lowercase", {})], "t", "heldout"
    )
    group = answers("all lower.", "all lower", "Not Lower.", "Not Lower!")
    kinds = pair_kinds([prompt], [group])
    # (score, met): (4 + 1.5 + 0.5, 1), (4 - 1.5, 1), (1.5 + 0.5, 0), (-1.5 + 0.5, 0): "!" ends a sentence, but cut
    # 6 v 2.5 the ending; 6 v 2, 6 v -1, 2.5 v -1 instructions; 2.5 v 2 close (met, cut against unmet, ended);
    # 2 v -1 the ending
    assert kinds == {"equal": 0, "close": 1 / 6, "ending": 2 / 6, "instructions": 3 / 6}
    twice = answers("Not Lower.", "all lower.", "Not Lower.", "Not Lower.")
    assert pair_kinds([prompt], [twice])["equal"] == pytest.approx(3 / 6)
    assert best_of([prompt], [twice], 1) == 0.25 and best_of([prompt], [twice], 2) == 0.5
    assert best_of([prompt], [twice], 4) == 1.0
    assert kl_bound(1) == 0 and kl_bound(4) == pytest.approx(0.636, abs=1e-3)


def test_two_labelers_keep_every_decided_pair_and_about_half_of_the_equal_ones():
    prompt = InstructionPrompt(
        [{"role": "user", "content": "Say it."}], [Instruction("lowercase", {})], "t", "heldout"
    )
    decided = answers("all lower.", "all lower", "Not Lower.", "Not Lower!")
    figures = trained_pairs([prompt] * 20, [decided] * 20)
    assert figures["trained_wrong"] == 0 and figures["trained_equal"] == 0
    assert 5 <= figures["per_set"] <= 6  # the close pair (0.5 apart) is split now and then, the rest never
    alike = answers("Not Lower.", "Not Lower.", "Not Lower.", "Not Lower.")
    figures = trained_pairs([prompt] * 50, [alike] * 50)
    assert figures["trained_equal"] == 1 and 2 <= figures["per_set"] <= 4  # 6 pairs, each kept half the time


@pytest.mark.slow
def test_the_benchmark_runs_on_the_embedded_default():
    env = {**os.environ, "RANKLOOP_HOME": str(Path(os.environ.get("RANKLOOP_HOME", "runs")).resolve())}
    env["RANKLOOP_BENCH_RESULTS"] = str(ROOT / ".pytest_cache" / "bench-results")  # not the repository's
    command = [sys.executable, str(ROOT / "bench" / "headroom.py"), "--prompts", "2", "--samples", "4", "--max-new-tokens", "8"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    shares = [float(figures[f"pairs_{k}"]) for k in ("equal", "close", "ending", "instructions")]
    assert sum(shares) == pytest.approx(1.0, abs=0.02) and set(figures) >= {
        "best_of_1",
        "best_of_2",
        "best_of_4",
    }
