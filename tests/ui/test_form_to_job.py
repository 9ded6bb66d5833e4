"""A form's values reach the job's process as the config they describe: a cleared field whose default is not None
arrives as None (not silently as its default), and a combination the config's rules refuse is refused by the form
before any job row exists."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import typing

import gradio as gr
import pytest
from sqlmodel import Session, func, select

from labeler.store.db import make_engine
from labeler.store.tables import Job
from labeler.ui.forms import config_form, form_values
from rlhf.serve.jobs import JobRunner, Launcher
from rlhf.train.configs import JOB_KINDS, RewardConfig, job_config

# what the "stage" prints: the config it parsed from the job's YAML file, as JSON
PRINT_CONFIG = (
    "import dataclasses, json, sys; from rlhf.train.configs import job_config; from rlhf.train.stage import parse_config; "
    "config, _ = parse_config(job_config(sys.argv[1]), sys.argv[2:]); print('CONFIG', json.dumps(dataclasses.asdict(config)))"
)


class PrintingLauncher(Launcher):
    """Starts a process that parses the job's settings file as the stage would, and prints what it got."""

    def head(self, module: str) -> list[str]:
        kind = module.rsplit(".", 1)[-1]
        return [sys.executable, "-c", PRINT_CONFIG, kind]


def clearable(config_cls: type, names: list[str]) -> list[str]:
    """The form's fields that may be None but default to something else."""
    hints = typing.get_type_hints(config_cls)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    return [
        n
        for n in names
        if type(None) in typing.get_args(hints[n]) and defaults.get(n) not in (None, dataclasses.MISSING)
    ]


def form_with(kind: str, **values) -> tuple[list[str], tuple]:
    with gr.Blocks():
        form = config_form(job_config(kind))
    return list(form), tuple(values.get(name, c.value) for name, c in form.items())


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_a_cleared_field_reaches_the_jobs_process_as_none(tmp_path, kind):
    names, _ = form_with(kind)
    cleared = clearable(job_config(kind), names)
    if not cleared:
        pytest.skip(f"the {kind} form has no field that may be None with another default")
    names, values = form_with(kind, **dict.fromkeys(cleared, ""))
    params = form_values(job_config(kind), names, values)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    runner = JobRunner(engine=engine, db_url=url, home=tmp_path, launcher=PrintingLauncher())
    job_id = runner.start(kind, params)
    deadline = time.monotonic() + 120
    while "CONFIG" not in (log := runner.log_path(job_id).read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    runner.stop()
    got = json.loads(log.split("CONFIG ", 1)[1].splitlines()[0])
    assert {n: got[n] for n in cleared} == dict.fromkeys(cleared), log[-2000:]


def test_a_combination_the_config_refuses_is_refused_by_the_form_before_a_job_exists(tmp_path):
    names, values = form_with("reward", trainer="trl", heads=2)
    with pytest.raises(ValueError, match="trl's RewardTrainer trains one score head"):
        form_values(RewardConfig, names, values)
    with pytest.raises(ValueError, match="turn keep_ties off"):
        RewardConfig(keep_ties=True, labeler_weights="reliability")  # flags and YAML build the same object
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with Session(engine) as s:
        assert s.exec(select(func.count(Job.id))).one() == 0
