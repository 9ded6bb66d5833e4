"""Running a training stage from the command line or as a job: parse the config dataclass (flags or YAML),
report progress to the console or the job row, and record how the job ended.

    python -m rlhf.train.reward --epochs 2            # flags made from RewardConfig's fields
    python -m rlhf.train.reward --config round.yaml   # the same fields from YAML
    python -m rlhf.train.reward --job-id 7 ...        # started by the job runner: writes into job 7
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session
from transformers import HfArgumentParser

from labeler.records.job_rows import Ending, JobError, finish_job, mark_running
from labeler.store.db import default_url, make_engine
from rlhf.train.configs import check_ranges
from rlhf.train.progress import Cancelled, ConsoleReporter, JobReporter


def dashed(argv: list[str]) -> list[str]:
    """Flags spelled with underscores (`--kl_budget 4`, `--kl_budget=4`) rewritten with dashes, the one spelling,
    each with a deprecation line on stderr (the old spelling is accepted for one release)."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and "_" in name:
            new = name.replace("_", "-")
            print(f"{name} is spelled {new} now; the old spelling goes in the next release", file=sys.stderr)
            arg = new + eq + value
        out.append(arg)
    return out


def parse_config(config_cls: Any, argv: list[str] | None) -> tuple[Any, int | None]:
    """The stage's settings from flags (dashes: `--kl-budget 4`), or from `--config FILE` (YAML) with flags on
    top; a value out of its range (rlhf/train/configs.RANGES) exits with one line naming the field and where it came
    from."""
    argv = dashed(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", help="YAML file with the stage's settings")
    pre.add_argument("--job-id", type=int, help=argparse.SUPPRESS)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(config_cls)
    source = known.config or "the command line"
    try:
        if known.config:
            (config,) = parser.parse_yaml_file(known.config)
            source = f"{known.config} with the command line's flags"
            overrides = parser.parse_args_into_dataclasses(rest, look_for_args_file=False) if rest else None
            if overrides:
                defaults = config_cls()
                for key, value in asdict(overrides[0]).items():
                    if value != getattr(defaults, key):
                        setattr(config, key, value)
                check_ranges(config)
        else:
            (config,) = parser.parse_args_into_dataclasses(rest, look_for_args_file=False)
    except ValueError as exc:
        raise SystemExit(f"{source}: {exc}") from exc
    home_env = os.environ.get("RANKLOOP_HOME")
    if home_env and getattr(config, "home", None) == "runs":
        config.home = home_env
    return config, known.job_id


def _finish(
    engine: Engine, job_id: int, status: Ending, error: str | None = None, result: dict | None = None
) -> None:
    with Session(engine) as session:
        finish_job(session=session, job_id=job_id, status=status, error=error, result=result)


def run_stage(config_cls: Any, run: Callable, argv: list[str] | None, *, kind: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config, job_id = parse_config(config_cls, argv)
    if job_id is None:
        result = run(config, reporter=ConsoleReporter())
        print(summary(kind, result))
        return
    engine = make_engine(config.db or default_url(Path(config.home)))
    with Session(engine) as session:
        try:
            mark_running(session=session, job_id=job_id, pid=os.getpid())
        except JobError as exc:
            raise SystemExit(f"{exc} in the store at {engine.url!r}") from exc
    try:
        result = run(config, reporter=JobReporter(engine, job_id), job_id=job_id)
    except Cancelled:
        _finish(engine, job_id, "cancelled", "cancelled by an admin")
        sys.exit(3)
    except BaseException as exc:
        _finish(engine, job_id, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
        raise
    _finish(engine, job_id, "succeeded", result=result_dict(result))
    print(summary(kind, result))


def result_dict(result: Any) -> dict:
    data = asdict(result) if is_dataclass(result) and not isinstance(result, type) else dict(result)
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def summary(kind: str, result: object) -> str:
    data = result_dict(result)
    metrics = data.get("metrics", {})
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    gate = data.get("gate") or {}  # a round's verdict (rlhf/train/gate.py), line by line
    lines = "".join(f"\n{line}" for line in gate.get("lines", []))
    return f"{kind} {data.get('name', '')} saved to {data.get('path', '')}: {shown}{lines}"
