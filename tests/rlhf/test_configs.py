"""One registry of stages (rlhf/train/configs.py) that the command line, the job runner and the admin forms all read,
and settings that load no model library."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest

from rlhf.serve.jobs import JobError, JobRunner
from rlhf.train.configs import ANSWER_TOKENS, JOB_KINDS, STAGES, RoundConfig, job_config


def test_every_stage_module_runs_with_its_settings():
    for name, stage in STAGES.items():
        module = importlib.import_module(stage.module)
        assert callable(module.main), name
        if stage.config is not None:
            assert dataclasses.is_dataclass(stage.config) and stage.title, name
            assert all(f.metadata.get("help") for f in dataclasses.fields(stage.config)), name


def test_the_command_line_lists_every_stage(capsys):
    import app

    with pytest.raises(SystemExit):
        app.main(["--help"])
    shown = capsys.readouterr().out
    assert all(name in shown for name in STAGES)


def test_the_job_runner_starts_exactly_the_job_kinds(tmp_path, engine):
    runner = JobRunner(engine=engine, db_url="sqlite://", home=tmp_path)
    assert set(JOB_KINDS) == {"round", "reward", "ppo", "dpo", "sft"}
    for kind in JOB_KINDS:
        assert runner.command(kind, 1, {})[2] == STAGES[kind].module
    with pytest.raises(JobError, match="unknown job kind 'pregen'"):
        runner.start("pregen", {})
    with pytest.raises(ValueError, match="unknown job kind"):
        job_config("pregen")


def test_settings_and_the_admin_tab_load_no_model_library():
    code = (
        "import sys, rlhf.train.configs, labeler.ui.admin_training\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'accelerate') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_round_exposes_stage_settings_with_the_stages_own_types_and_help():
    from rlhf.train.configs import ROUND_EXPOSES, DPOConfig, PPOConfig, RewardConfig, RoundConfig

    round_fields = {f.name: f for f in dataclasses.fields(RoundConfig)}
    for prefix, (config, exposed) in ROUND_EXPOSES.items():
        stage_fields = {f.name: f for f in dataclasses.fields(config)}
        for name, default in exposed.items():
            mine, theirs = round_fields[f"{prefix}_{name}"], stage_fields[name]
            assert (mine.type, mine.metadata) == (theirs.type, theirs.metadata)
            assert mine.default == (theirs.default if default is None else default)
    config = RoundConfig(ppo_steps=3, reward_epochs=5, dpo_beta=0.2)
    assert PPOConfig(**config.stage_settings("ppo")).steps == 3
    assert RewardConfig(**config.stage_settings("reward")).epochs == 5
    assert DPOConfig(**config.stage_settings("dpo")).beta == 0.2


def test_every_range_names_a_numeric_field_and_every_default_is_in_range():
    import typing

    from rlhf.train.configs import RANGES, RoundConfig, field_range

    numeric = set()
    for kind in JOB_KINDS:
        config = job_config(kind)
        config()  # defaults pass their own checks
        for name, kind_ in typing.get_type_hints(config).items():
            if kind_ in (int, float, int | None, float | None):
                numeric.add(name)
    assert set(RANGES) <= numeric
    assert field_range(RoundConfig, "ppo_steps") == RANGES["steps"]
    assert field_range(RoundConfig, "reward_learning_rate") == RANGES["learning_rate"]
    assert field_range(RoundConfig, "auto_switch") is None


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("ppo", {"steps": 0}, "steps = 0 is out of range: it must be at least 1"),
        ("ppo", {"learning_rate": 0.0}, "learning_rate = 0 is out of range: it must be more than 0 and at most 1"),
        ("reward", {"heads": 17}, "heads = 17 is out of range: it must be at least 1 and at most 16"),
        ("reward", {"eval_fraction": 1.0}, "eval_fraction = 1 is out of range: it must be at least 0 and at most 0.9"),
        ("round", {"ppo_kl_coef": -0.1}, "ppo_kl_coef = -0.1 is out of range: it must be at least 0"),
        ("dpo", {"beta": 0.0}, "beta = 0 is out of range: it must be more than 0"),
    ],
)  # fmt: skip
def test_a_value_out_of_range_is_refused_when_the_config_is_made(kind, settings, message):
    with pytest.raises(ValueError, match=message):
        job_config(kind)(**settings)


def test_the_command_line_and_yaml_name_the_field_and_the_file(tmp_path):
    from rlhf.train.configs import PPOConfig
    from rlhf.train.stage import parse_config

    with pytest.raises(SystemExit, match="the command line: kl_coef = -1 is out of range"):
        parse_config(PPOConfig, ["--kl_coef", "-1"])
    recipe = tmp_path / "round.yaml"
    recipe.write_text("steps: 0\n")
    with pytest.raises(SystemExit, match=f"{recipe}: steps = 0 is out of range: it must be at least 1"):
        parse_config(PPOConfig, ["--config", str(recipe)])
    recipe.write_text("steps: 3\n")
    with pytest.raises(SystemExit, match="with the command line's flags: temperature = 11 is out of range"):
        parse_config(PPOConfig, ["--config", str(recipe), "--temperature", "11"])
    assert parse_config(PPOConfig, ["--config", str(recipe)])[0].steps == 3


def test_flags_are_spelled_with_dashes_and_the_old_underscores_still_work_with_a_warning(capsys):
    from rlhf.train.configs import DPOConfig
    from rlhf.train.stage import parse_config

    config, _ = parse_config(DPOConfig, ["--kl-budget", "3", "--start-from", "base", "--db=sqlite:///a_b.db"])
    assert (config.kl_budget, config.start_from, config.db) == (3.0, "base", "sqlite:///a_b.db")
    assert capsys.readouterr().err == ""
    old, _ = parse_config(DPOConfig, ["--kl_budget", "3", "--kl_budget_from=parent"])
    assert (old.kl_budget, old.kl_budget_from) == (3.0, "parent")
    err = capsys.readouterr().err
    assert "--kl_budget is spelled --kl-budget now" in err and "--kl_budget_from is spelled" in err


def test_the_generator_writes_answers_as_long_as_the_round_measures():
    """`rankloop serve`'s generator (thread or process) caps answers where a DPO round's KL budget samples them, so
    the budget, bench/loop.py and the labelers see answers of one length."""
    import app
    from rlhf.serve import pregen_process

    served = app.build_parser().parse_args(["serve"]).max_new_tokens
    process = pregen_process.build_parser().parse_args([]).max_new_tokens
    assert served == process == RoundConfig().dpo_max_new_tokens == ANSWER_TOKENS
