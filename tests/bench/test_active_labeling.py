"""bench/active_labeling.py runs end to end (two sizes, one repeat; each model continuing the last as admin
rounds do, or fresh ones) and refuses a selection setting the app would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "active_labeling.py"


def run_bench(*args: str, results: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RANKLOOP_BENCH_RESULTS": str(results or ROOT / ".pytest_cache" / "bench-results")}
    return subprocess.run(
        [sys.executable, str(BENCH), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_bench_draws_its_curves(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    done = run_bench("--sizes", "32,40", "--repeats", "1", "--arms", "disagreement,information", "--heads", "2", "--epochs", "1", "--oversample", "3", "--plot", str(png), results=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = done.stdout.strip().splitlines()[-1]
    assert result.startswith("RESULT ")
    figures = dict(item.split("=", 1) for item in result.split()[1:])
    for arm in ("random", "disagreement", "information"):
        assert 0.0 <= float(figures[f"{arm}_40"]) <= 1.0
        assert figures[f"{arm}_32"] == figures["random_32"]  # every arm starts from the same random sets
    for arm in ("disagreement", "information"):
        share = figures[f"{arm}_share_by_size"].removeprefix("40:")
        assert share == "never" or float(share) > 0
    assert figures["oversample"] == "3" and figures["same"] == "0.45"
    assert png.stat().st_size > 0
    [kept] = [json.loads(line) for line in (tmp_path / "active_labeling.jsonl").read_text().splitlines()]
    assert kept["result"] == figures and "--oversample 3" in kept["command"]  # the run's line, as data
    # as an admin round does, each arm's second model continued its first: on the 8 new sets and again on the
    # first's 32
    assert figures["continued"] == "true" and figures["replay"] == "1.0"
    log = done.stdout + done.stderr
    assert log.count("train_groups=40 replayed_sets=32 seen_sets=40") == 3, log[-3000:]


def test_bench_can_train_a_fresh_model_at_every_size(tmp_path: Path) -> None:
    done = run_bench("--sizes", "32,40", "--repeats", "1", "--arms", "information", "--heads", "1", "--oversample", "2", "--fresh", "--epochs", "2", "--plot", str(tmp_path / "c.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split()[1:])
    assert figures["continued"] == "false" and figures["epochs"] == "2"
    assert 0.0 <= float(figures["information_40"]) <= 1.0
    log = done.stdout + done.stderr
    assert "replayed_sets=32" not in log and log.count("train_groups=40 replayed_sets=0 seen_sets=40") == 2


def test_bench_refuses_an_oversample_the_app_refuses() -> None:
    done = run_bench("--oversample", "9", "--repeats", "1")
    assert done.returncode == 2
    assert "oversample must be between 1 and 8" in done.stderr
