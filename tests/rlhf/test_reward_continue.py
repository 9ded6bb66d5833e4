"""Continuing a reward model (`continue_from`): it starts from the earlier model's adapter and head, trains on the
sets that model has not met and (`replay`, all by default) again on those it has, evaluates on every held-out
set and reviews only the new sets."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labeler.store.db import make_engine
from rlhf.train.configs import RewardConfig, RoundConfig
from rlhf.train.reward import build_scorer, read_data, run
from rlhf.train.reward_data import read_seen
from rlhf.train.scoring import HEAD_FILE
from tests.rlhf.synthetic import add_ranked_sets, synthetic_store


def config(tmp_path: Path, url: str, checkpoint: str, **kw) -> RewardConfig:
    settings = {"epochs": 2, "learning_rate": 3e-3, "eval_fraction": 0.25, "max_length": 64, "device": "cpu"}
    return RewardConfig(model=checkpoint, home=str(tmp_path), db=url, **{**settings, **kw})


def test_continue_without_replay_trains_on_new_sets_only_from_the_earlier_weights(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=40)
    first = run(config(tmp_path, url, checkpoint))
    seen_first = read_seen(first.path)
    heldout_first = {g.set_id for g in read_data(make_engine(url), config(tmp_path, url, checkpoint)).heldout}
    assert first.facts.continued_from is None and len(seen_first) == 40  # train and held-out sets
    add_ranked_sets(url, 24, seed=1, first=40)

    data = read_data(make_engine(url), config(tmp_path, url, checkpoint, continue_from="latest", replay=0.0))
    assert data.parent is not None and data.parent.name == "r1" and data.replayed == 0
    assert {g.set_id for g in data.train}.isdisjoint(seen_first)  # only sets r1 never met
    # the precision that selection reads covers every labeled training set, met before or not
    assert {g.set_id for g in data.labeled} >= {g.set_id for g in data.train} | (
        set(seen_first) - heldout_first
    )
    heldout_ids = {g.set_id for g in data.heldout}
    assert heldout_ids & set(seen_first) and heldout_ids - set(seen_first)  # held-out sets of both batches
    assert all(c.set_id not in seen_first for c in data.complaints)  # the review: new sets only
    scorer, _ = build_scorer(config(tmp_path, url, checkpoint), data.parent)
    r1_head = load_file(first.path / HEAD_FILE)
    assert torch.equal(scorer.head.state_dict()["linear.weight"], r1_head["linear.weight"])
    assert any(p.requires_grad for n, p in scorer.model.named_parameters() if "lora_" in n)

    second = run(config(tmp_path, url, checkpoint, continue_from="latest", replay=0.0))
    assert second.name == "r2" and second.facts.continued_from == "r1"
    assert second.train_sets == len(data.train) < 24
    assert second.heldout_sets == len(heldout_ids) > first.heldout_sets
    assert second.metrics["accuracy"] > 0.8
    assert len(read_seen(second.path)) == 64
    assert second.metrics["review"]["sets_checked"] == len(data.complaints) < 64

    with pytest.raises(ValueError, match="no sets ranked since r2"):
        run(config(tmp_path, url, checkpoint, continue_from="r2"))


def test_a_continued_model_trains_again_on_the_sets_it_met_so_that_it_does_not_forget_them(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=24)
    first = run(config(tmp_path, url, checkpoint, epochs=1))
    met = {g.set_id for g in read_data(make_engine(url), config(tmp_path, url, checkpoint)).train}
    assert met <= set(read_seen(first.path))
    add_ranked_sets(url, 12, seed=1, first=24)
    engine = make_engine(url)

    every = read_data(
        engine, config(tmp_path, url, checkpoint, continue_from="latest")
    )  # replay 1, the default
    new = [g.set_id for g in every.train[: len(every.train) - every.replayed]]
    assert new and set(new).isdisjoint(met)  # the new sets first (a max_pairs cut keeps them)
    assert {g.set_id for g in every.train[len(new) :]} == met and every.replayed == len(met)
    half = read_data(engine, config(tmp_path, url, checkpoint, continue_from="latest", replay=0.5))
    again = {g.set_id for g in half.train[len(new) :]}
    assert half.replayed == len(again) == round(len(met) / 2) and again < met
    assert half.seen == every.seen  # what the model has met once trained does not depend on the replay
    unchanged = read_data(engine, config(tmp_path, url, checkpoint, continue_from="latest", replay=0.5))
    assert [g.set_id for g in unchanged.train] == [g.set_id for g in half.train]  # drawn with the run's seed

    second = run(config(tmp_path, url, checkpoint, epochs=1, continue_from="latest"))
    assert second.facts.continued_from == "r1" and second.metrics["replayed_sets"] == len(met)
    assert second.train_sets == len(new) + len(met)
    with pytest.raises(ValueError, match="no sets ranked since r2"):  # replay alone is no reason to train
        run(config(tmp_path, url, checkpoint, continue_from="r2"))
    with pytest.raises(
        ValueError, match=r"replay = 1\.5 is out of range: it must be at least 0 and at most 1"
    ):
        config(tmp_path, url, checkpoint, replay=1.5)


def test_continue_from_names_what_it_cannot_use(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=16)
    with pytest.raises(ValueError, match="continue_from=r7: no reward model 'r7'"):
        run(config(tmp_path, url, checkpoint, continue_from="r7"))
    fresh = run(config(tmp_path, url, checkpoint, continue_from="latest", epochs=1))  # none yet: a new one
    assert fresh.facts.continued_from is None
    add_ranked_sets(url, 4, seed=2, first=16)
    with pytest.raises(ValueError, match="LoRA reward models only"):
        run(config(tmp_path, url, checkpoint, continue_from="r1", full_finetune=True))


def test_a_round_continues_the_latest_reward_model_by_default():
    assert RoundConfig().stage_settings("reward")["continue_from"] == "latest"
    assert RoundConfig().stage_settings("reward")["replay"] == 1.0
    assert RoundConfig(reward_replay=0.25).stage_settings("reward")["replay"] == 0.25
    assert RewardConfig().continue_from is None  # `rankloop reward` alone trains a new one
