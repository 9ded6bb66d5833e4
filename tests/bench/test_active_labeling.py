"""bench/active_labeling.py runs end to end (two sizes, one repeat) and refuses a selection setting the app would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "active_labeling.py"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_bench_draws_its_curves(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    done = run_bench("--sizes", "32,40", "--repeats", "1", "--arms", "disagreement,information", "--heads", "2", "--epochs", "1", "--oversample", "3", "--plot", str(png))  # fmt: skip
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


def test_bench_refuses_an_oversample_the_app_refuses() -> None:
    done = run_bench("--oversample", "9", "--repeats", "1")
    assert done.returncode == 2
    assert "oversample must be between 1 and 8" in done.stderr
