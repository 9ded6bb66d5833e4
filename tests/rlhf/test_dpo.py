"""`rankloop dpo` end to end on the tiny model: ranked sets in the store become pairs, trl's DPOTrainer trains a
LoRA adapter on the current version, and version 1 is registered and made current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlmodel import Session, col, select

from labeler.records.policies import make_current
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, submit_ranking
from labeler.store.tables import PolicyVersion, Prompt, TrainingRound, id_of
from labeler.store.users import add_user
from models.adapters import LORA_TARGETS
from tests.rlhf.ppo_helpers import assert_on_the_line, ppo_store, saved_adapter

REPO = Path(__file__).resolve().parents[2]


def rank_some_sets(url: str, count: int = 6) -> None:
    engine = make_engine(url)
    with Session(engine) as s:
        labeler = id_of(add_user(session=s, name="ann", password="ann-password"))
        v0 = s.exec(select(PolicyVersion)).one().id
        for prompt_id in [id_of(p) for p in s.exec(select(Prompt).order_by(col(Prompt.id))).all()[:count]]:
            answers = [
                CompletionIn(f"a short answer {prompt_id}"),
                CompletionIn("no"),
                CompletionIn("maybe later"),
            ]
            add_completion_set(session=s, prompt_id=prompt_id, completions=answers, policy_version_id=v0)
        for i in range(count):
            leased = lease_next_set(session=s, user_id=labeler, seed=i)
            assert leased is not None
            ranks = {id_of(c): position + 1 for position, c in enumerate(leased.completions)}
            submit_ranking(
                session=s,
                ranking=RankingIn(
                    set_id=id_of(leased.set), user_id=labeler, submission_id=f"dpo-{i}", ranks=ranks
                ),
            )
    engine.dispose()


def run_round(args: list[str]) -> str:
    """`rankloop round ARGS` in a subprocess; it must succeed. Returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "round", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("trainer", ["sets", "trl"])
def test_rankloop_dpo_trains_and_registers_the_next_version(tmp_path, trainer):
    url, _ = ppo_store(tmp_path)
    rank_some_sets(url)
    args = ["--home", str(tmp_path), "--db", url, "--epochs", "1", "--batch_size", "2", "--max_length", "64"]
    args += ["--trainer", trainer, "--label_smoothing", "0.1"]  # conservative DPO, in either trainer
    args += ["--sample_prompts", "1", "--max_new_tokens", "4", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "app", "dpo", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with Session(make_engine(url)) as s:
        versions = s.exec(select(PolicyVersion).order_by(PolicyVersion.version)).all()
    assert [v.version for v in versions] == [0, 1]
    assert versions[1].is_current and Path(versions[1].adapter_path).is_dir()
    # the same modules as a policy adapter PPO makes, whichever trainer
    saved = json.loads((Path(versions[1].adapter_path) / "adapter_config.json").read_text())
    assert set(saved["target_modules"]) == set(LORA_TARGETS)


def test_rankloop_round_with_dpo_records_the_round(tmp_path):
    url, _ = ppo_store(tmp_path)
    rank_some_sets(url)
    args = ["--home", str(tmp_path), "--db", url, "--optimizer", "dpo", "--device", "cpu"]
    printed = run_round([*args, "--dpo_start_from", "base"])
    assert "\ngate: not evaluated; kept as a candidate" in printed  # the verdict, line by line
    assert "[not measured] held-out accuracy (DPO's implicit reward)" in printed
    with Session(make_engine(url)) as s:
        [round_] = s.exec(select(TrainingRound)).all()
        new = s.get(PolicyVersion, round_.new_version_id)
    assert new is not None and new.metrics["config"]["start_from"] == "base"
    assert round_.optimizer == "dpo" and round_.reward_model_id is None and len(round_.ranking_ids) == 6
    # the gate: far fewer than 80 held-out pairs, so not evaluated and not switched; an admin may still switch
    assert new.version == 1 and not new.is_current and round_.metrics["gate"]["decision"] == "not evaluated"
    assert new.metrics["gate"]["lines"][0].startswith("gate: not evaluated; kept as a candidate")
    with Session(make_engine(url)) as s:
        make_current(session=s, version=1, by="admin")
        switched = s.get(PolicyVersion, new.id)
        assert switched.is_current and switched.metrics["switches"][0]["by"] == "admin"
        assert switched.metrics["switches"][0]["gate"] == "not evaluated"


def test_dpo_on_parent_data_trains_on_the_sets_its_parent_wrote_and_says_when_there_are_none(tmp_path):
    from rlhf.train import dpo
    from rlhf.train.configs import DPOConfig

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=4)
    settings = {"epochs": 1, "batch_size": 2, "max_length": 64, "sample_prompts": 1, "max_new_tokens": 4}
    config = DPOConfig(home=str(tmp_path), db=url, device="cpu", data="parent", **settings)
    first = dpo.run(config)
    assert first.version == 1 and first.train_sets == 4  # v0 wrote the four ranked sets
    with pytest.raises(ValueError, match="no ranked set in version v1's sets has pairs yet"):
        dpo.run(config)  # v1 is now the parent and wrote nothing
    with Session(make_engine(url)) as s:
        assert len(s.exec(select(PolicyVersion)).all()) == 2  # the refused run registered nothing


def test_rankloop_round_with_dpo_on_the_parents_sets_runs_from_the_command_line(tmp_path):
    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=4)
    args = ["--home", str(tmp_path), "--db", url, "--optimizer", "dpo", "--dpo_data", "parent"]
    args += ["--dpo_trainer", "sets", "--dpo_sft_weight", "0.5", "--dpo_kl_weight", "0.1", "--device", "cpu"]
    args += ["--dpo_label_smoothing", "0.1", "--dpo_length_weight", "0.02", "--dpo_batch_sets", "1"]
    run_round([*args, "--dpo_eval_fraction", "0.1"])
    with Session(make_engine(url)) as s:
        [round_] = s.exec(select(TrainingRound)).all()
        new = s.get(PolicyVersion, round_.new_version_id)
    assert new is not None and new.metrics["config"]["length_weight"] == 0.02
    assert round_.optimizer == "dpo" and round_.metrics["final"]["step"] == 4  # v0's four sets, one a step
    assert round_.metrics["final"]["sft_nll"] > 0  # the best answers' NLL, trained next to DPO's loss
    assert round_.metrics["final"]["kl"] > 0  # the KL from the reference, trained next to both


def test_rankloop_round_keeps_the_new_version_within_its_kl_budget(tmp_path):
    """A DPO round that moves far (a high learning rate) is scaled back to its KL budget: the saved adapter,
    loaded afresh, measures the KL the round recorded on the same prompts and samples."""
    from peft import PeftModel

    from models.generation import SamplingParams
    from models.kl_budget import sampled_kl
    from models.loading import load_base
    from rlhf.train.configs import DPOConfig
    from rlhf.train.dpo import read_groups
    from rlhf.train.policy_stage import budget_prompts

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=4)
    args = ["--home", str(tmp_path), "--db", url, "--optimizer", "dpo", "--dpo_learning_rate", "0.02"]
    args += ["--dpo_kl_budget", "0.05", "--dpo_max_new_tokens", "6", "--device", "cpu"]
    # the DPO stage's own budget settings (the round's defaults differ), which the check below samples with
    run_round(
        [
            *args,
            "--dpo_eval_fraction",
            "0.1",
            "--dpo_kl_budget_from",
            "base",
            "--dpo_kl_budget_temperature",
            "1",
        ]
    )
    engine = make_engine(url)
    with Session(engine) as s:
        new = s.exec(select(PolicyVersion).where(PolicyVersion.version == 1)).one()
        [round_] = s.exec(select(TrainingRound)).all()
    fit = new.metrics["kl_budget"]
    assert fit["kl_before"] > 0.05 and fit["within"] and fit["kl"] <= 0.05 and 0 < fit["scale"] < 1
    config = DPOConfig()  # the budget's sampling settings, as the round ran them
    train, _ = read_groups(engine, config, 0)
    assert fit["measures"][0] == [1.0, fit["kl_before"]] and fit["prompts"] == len(train)
    # the budget is timed apart from DPO (the duration estimate's rate for it), its answers counted
    assert round_.metrics["seconds"]["kl_budget"] == pytest.approx(fit["seconds"])
    assert fit["answers"] == len(fit["measures"]) * len(train) * config.kl_budget_samples
    prompts = budget_prompts([g.prompt for g in train], 32, config.seed)
    base, tokenizer = load_base(new.base_model, home=tmp_path, device="cpu")
    saved = PeftModel.from_pretrained(base, new.adapter_path).eval()
    sampling = SamplingParams(max_new_tokens=6, temperature=1.0, top_p=1.0, seed=config.seed)
    again = sampled_kl(saved, tokenizer, prompts, samples=config.kl_budget_samples, sampling=sampling)
    assert sum(again) / len(again) == pytest.approx(fit["kl"], abs=1e-3)


def test_dpo_holds_out_a_share_of_prompts_and_scores_its_implicit_reward_on_them(tmp_path):
    from rlhf.train import dpo
    from rlhf.train.configs import DPOConfig

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=6)
    settings = {"epochs": 1, "max_length": 64, "sample_prompts": 1, "max_new_tokens": 4, "device": "cpu"}
    config = DPOConfig(home=str(tmp_path), db=url, eval_fraction=0.5, **settings)
    train, heldout = dpo.read_groups(make_engine(url), config, 0)
    assert train and heldout and not {g.prompt_key for g in train} & {g.prompt_key for g in heldout}
    result = dpo.run(config)
    assert result.train_sets == len(train) and result.train_sets + len(heldout) == 6
    assert result.metrics["heldout_sets"] == len(heldout) and result.metrics["heldout_pairs"] == 3 * len(
        heldout
    )
    assert 0.0 <= result.metrics["heldout_accuracy"] <= 1.0


def test_rankloop_dpo_with_a_kl_budget_records_the_fit_from_the_command_line(tmp_path):
    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=4)
    args = ["--home", str(tmp_path), "--db", url, "--learning_rate", "0.02", "--kl_budget", "0.05"]
    args += ["--kl_budget_prompts", "3", "--max_new_tokens", "6", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "app", "dpo", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with Session(make_engine(url)) as s:
        v1 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 1)).one()
    fit = v1.metrics["kl_budget"]
    assert fit["budget"] == 0.05 and fit["prompts"] == 3 and fit["kl_before"] > 0.05 and fit["scale"] < 1


def adapter_weights(engine, version: int) -> dict:
    with Session(engine) as s:
        row = s.exec(select(PolicyVersion).where(PolicyVersion.version == version)).one()
    assert row.adapter_path is not None
    return saved_adapter(row.adapter_path)


def test_dpo_from_the_base_trains_a_fresh_adapter_whatever_the_parent(tmp_path):
    """start_from=base ignores the parent's adapter: a second version trained on the same sets from v1 equals v1
    (same seed, same data), from the command line too; start_from=parent continues v2's adapter and differs."""
    from rlhf.train import dpo
    from rlhf.train.configs import DPOConfig

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=4)
    settings = {"learning_rate": 1e-3, "max_length": 64, "sample_prompts": 1, "max_new_tokens": 4}
    dpo.run(DPOConfig(home=str(tmp_path), db=url, device="cpu", start_from="base", **settings))
    args = ["--home", str(tmp_path), "--db", url, "--device", "cpu", "--start_from", "base"]
    args += [f"--{name}={value}" for name, value in settings.items()]
    done = subprocess.run(
        [sys.executable, "-m", "app", "dpo", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    dpo.run(DPOConfig(home=str(tmp_path), db=url, device="cpu", start_from="parent", **settings))
    engine = make_engine(url)
    first, second, third = (adapter_weights(engine, v) for v in (1, 2, 3))
    assert first.keys() == second.keys() == third.keys()
    for name in first:
        assert torch.allclose(first[name], second[name], atol=1e-5), name
    assert max((third[n] - second[n]).abs().max().item() for n in first) > 1e-3


def test_a_budget_from_the_parent_scales_back_only_the_rounds_update(tmp_path):
    """kl_budget_from=parent (`rankloop dpo --kl_budget_from parent`): the version over its budget lies on the line
    from its parent's adapter to what the round trained (the same seeded round run without a budget), at the fit's
    scale; v1's learning is kept."""
    from rlhf.train import dpo
    from rlhf.train.configs import DPOConfig

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=4)
    settings = {"learning_rate": 0.02, "max_length": 64, "sample_prompts": 1, "max_new_tokens": 6}
    places = {"home": str(tmp_path), "db": url, "device": "cpu"}
    first = dpo.run(DPOConfig(kl_budget=1e6, **settings, **places))  # v1 and its KL (the budget leaves it be)
    assert first.kl_budget is not None and first.kl_budget["scale"] == 1.0
    dpo.run(DPOConfig(make_current=False, **settings, **places))  # v2: the round from v1 without a budget
    budget = (
        first.kl_budget["kl"] * 1.3
    )  # room above the parent (within 5% of it, the fit goes toward the base)
    args = [f"--{name}={value}" for name, value in {**settings, **places}.items()]
    args += [f"--kl_budget={budget}", "--kl_budget_from", "parent"]  # v3: from v1 again
    done = subprocess.run(
        [sys.executable, "-m", "app", "dpo", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    engine = make_engine(url)
    with Session(engine) as s:
        fit = s.exec(select(PolicyVersion).where(PolicyVersion.version == 3)).one().metrics["kl_budget"]
    assert fit["scaled_toward"] == "parent" and fit["kl_before"] > budget
    assert fit["within"] and 0 < fit["scale"] < 1
    parent, trained, kept = (adapter_weights(engine, v) for v in (1, 2, 3))
    assert_on_the_line(parent, trained, kept, fit["scale"])


def test_dpo_min_margin_trains_on_wide_pairs_only_and_evaluates_on_every_pair(tmp_path):
    from rlhf.train import dpo
    from rlhf.train.configs import DPOConfig

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=6)  # three answers ranked 1, 2, 3: pairs one, one and two ranks apart
    engine = make_engine(url)
    config = DPOConfig(home=str(tmp_path), db=url, eval_fraction=0.5, min_margin=2)
    train, heldout = dpo.read_groups(engine, config, 0)
    assert train and all([pair[2] for pair in g.pairs] == [2.0] for g in train)
    assert heldout and all(len(g.pairs) == 3 for g in heldout)
    with pytest.raises(ValueError, match="min_margin=3: no training pair"):
        dpo.read_groups(engine, DPOConfig(home=str(tmp_path), db=url, eval_fraction=0.5, min_margin=3), 0)


def test_dpo_replay_trains_on_the_parents_sets_and_a_share_of_the_others(tmp_path):
    from rlhf.train import dpo
    from rlhf.train.configs import DPOConfig

    url, _ = ppo_store(tmp_path)
    rank_some_sets(url, count=8)  # all written by v0
    engine = make_engine(url)
    every, _ = dpo.read_groups(engine, DPOConfig(home=str(tmp_path), db=url), 0)
    assert len(every) == 8
    # v0 as the parent: every set is its own, whatever the share replayed
    own, _ = dpo.read_groups(engine, DPOConfig(home=str(tmp_path), db=url, replay=0.5), 0)
    assert [g.set_id for g in own] == [g.set_id for g in every]
    # a parent that wrote none of them: half of the others, drawn by the seed, in their order
    half, _ = dpo.read_groups(engine, DPOConfig(home=str(tmp_path), db=url, replay=0.5), 1)
    again, _ = dpo.read_groups(engine, DPOConfig(home=str(tmp_path), db=url, replay=0.5), 1)
    ids = [g.set_id for g in half]
    assert len(ids) == 4 and ids == sorted(ids) and ids == [g.set_id for g in again]
    with pytest.raises(ValueError, match="replay=0: version v1 wrote no ranked training set"):
        dpo.read_groups(engine, DPOConfig(home=str(tmp_path), db=url, replay=0), 1)
    with pytest.raises(ValueError, match=r"replay = 1\.5 is out of range"):
        DPOConfig(replay=1.5)
