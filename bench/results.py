"""Where benchmark figures go: each run's `RESULT` line printed, and appended to `bench/results/NAME.jsonl` with
the date, the command and the git commit, so the history of a benchmark is data rather than prose.

    from results import record_result          # bench/ is on the path of `python bench/NAME.py`
    record_result(f"RESULT accuracy={acc:.4f} ...")
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RESULTS_ENV = "RANKLOOP_BENCH_RESULTS"  # another folder (tests use one of their own)


def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or RESULTS)


def parse_result(line: str) -> dict[str, str]:
    """`RESULT a=1 b=x` as {"a": "1", "b": "x"} (values as printed)."""
    fields = line.removeprefix("RESULT").split()
    return dict(f.split("=", 1) for f in fields if "=" in f)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def record_result(line: str, *, name: str | None = None, argv: list[str] | None = None) -> Path:
    """Print `line` (it starts with RESULT) and append it, parsed, to bench/results/NAME.jsonl (NAME: the
    running script's, or `name`; the folder: $RANKLOOP_BENCH_RESULTS where set); returns that file."""
    print(line, flush=True)
    argv = list(sys.argv if argv is None else argv)
    name = name or Path(argv[0]).stem
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    row = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", f"bench/{name}.py", *argv[1:]]),
        "commit": _commit(),
        "result": parse_result(line),
    }
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    return path
