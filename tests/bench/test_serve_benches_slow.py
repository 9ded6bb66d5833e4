"""bench/store.py and bench/labeling.py run end to end at their smallest: each starts the real `rankloop serve` and
prints its RESULT line, kept in a results folder of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_bench(name: str, *args: str, results: Path) -> dict[str, str]:
    """Run bench/NAME.py, check it succeeded and kept its line; its RESULT figures."""
    env = {**os.environ, "RANKLOOP_BENCH_RESULTS": str(results)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = done.stdout.strip().splitlines()[-1]
    assert result.startswith("RESULT ")
    figures = dict(item.split("=", 1) for item in result.split()[1:])
    [kept] = [json.loads(line) for line in (results / f"{name}.jsonl").read_text().splitlines()]
    assert kept["result"] == figures
    return figures


def test_the_store_bench_times_the_admin_pages_through_the_app(tmp_path: Path) -> None:
    figures = run_bench("store", "--rankings", "300", "--port", "7893", results=tmp_path)
    assert figures["rankings"] == "300" and int(figures["export_pairs"]) > 0
    for page in ("admin_open_s", "browse_sets_s", "browse_set_s", "export_preview_s", "figures_computed_s"):
        assert float(figures[page]) > 0


def test_the_labeling_bench_stores_every_acknowledged_ranking_once(tmp_path: Path) -> None:
    figures = run_bench(
        "labeling",
        "--labelers",
        "2",
        "--per-labeler",
        "2",
        "--generator",
        "off",
        "--port",
        "7895",
        results=tmp_path,
    )
    assert (figures["submitted"], figures["stored"], figures["lost"], figures["duplicated"]) == (
        "4",
        "4",
        "0",
        "0",
    )
    assert figures["errors"] == "0" and float(figures["login_p95_ms"]) > 0
