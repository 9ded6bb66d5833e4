import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from sqlmodel import Session, select

from labeler.labels.pairs import PairSettings
from labeler.store.db import make_engine
from labeler.store.tables import RewardModel
from models.tiny import tiny_model_and_tokenizer
from rlhf.train.configs import RewardConfig
from rlhf.train.losses import bradley_terry_loss, ranking_batch_loss
from rlhf.train.progress import ConsoleReporter
from rlhf.train.reward import build_scorer, run, train_loop
from rlhf.train.reward_data import load_groups, split_by_prompt
from rlhf.train.scoring import RewardScorer, ScoreHead, last_token_index, load_head, load_meta
from tests.rlhf.synthetic import synthetic_store


def test_ranking_batch_loss_equals_mean_of_per_pair_losses():
    scores = torch.tensor([0.3, -1.2, 2.0, 0.7, 0.1, -0.4], requires_grad=True)
    pairs = torch.tensor([[0, 1], [2, 0], [2, 1], [3, 0], [3, 1], [2, 3], [4, 5]])
    margins = torch.tensor([1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 0.5])
    for margin in (None, margins):
        for center in (0.0, 0.01):
            batched = ranking_batch_loss(scores, pairs, margin, center)
            per_pair = [
                bradley_terry_loss(
                    scores[c : c + 1],
                    scores[r : r + 1],
                    None if margin is None else margin[k : k + 1],
                    center,
                )
                for k, (c, r) in enumerate(pairs.tolist())
            ]
            assert torch.allclose(batched, torch.stack(per_pair).mean(), atol=1e-6)


def test_bradley_terry_hand_value():
    loss = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(1.0)).item())


def test_score_read_at_last_real_token_for_left_and_right_padding():
    model, tokenizer = tiny_model_and_tokenizer()
    scorer = RewardScorer(model, ScoreHead(model.config.hidden_size)).eval()
    texts = ["a short one", "a much longer text with many more tokens in it"]
    alone = [scorer(**tokenizer([t], return_tensors="pt")).item() for t in texts]
    for side in ("left", "right"):
        tokenizer.padding_side = side
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        assert torch.allclose(
            scorer(enc["input_ids"], enc["attention_mask"]), torch.tensor(alone), atol=1e-5
        ), side
    assert last_token_index(torch.tensor([[0, 1, 1], [1, 1, 0], [1, 1, 1]])).tolist() == [2, 1, 2]


def test_split_is_by_prompt(tmp_path):
    url, _ = synthetic_store(tmp_path, sets=40)
    with Session(make_engine(url)) as session:
        groups = load_groups(session=session, settings=PairSettings())
    train, heldout = split_by_prompt(groups, 0.3)
    assert train and heldout
    assert not {g.prompt_key for g in train} & {g.prompt_key for g in heldout}
    assert split_by_prompt(groups, 0.3)[1] == heldout  # fixed across rounds


def test_training_learns_preference_changes_only_adapter_and_head(tmp_path):
    url, checkpoint = synthetic_store(tmp_path)
    config = RewardConfig(
        model=checkpoint,
        home=str(tmp_path),
        db=url,
        epochs=3,
        learning_rate=3e-3,
        max_length=64,
        device="cpu",
    )
    with Session(make_engine(url)) as session:
        train, _ = split_by_prompt(
            load_groups(session=session, settings=PairSettings()), config.eval_fraction
        )
    scorer, tokenizer = build_scorer(config)
    before = {n: p.detach().clone() for n, p in scorer.named_parameters()}
    train_loop(scorer, tokenizer, train, config, ConsoleReporter())
    changed = {n for n, p in scorer.named_parameters() if not torch.equal(before[n], p)}
    assert any("lora_" in n for n in changed) and any(n.startswith("head.") for n in changed)
    assert all("lora_" in n or n.startswith("head.") for n in changed), sorted(changed)[:5]


def test_reward_stage_reaches_high_heldout_accuracy_and_registers(tmp_path):
    url, checkpoint = synthetic_store(tmp_path)
    result = run(
        RewardConfig(
            model=checkpoint,
            home=str(tmp_path),
            db=url,
            epochs=3,
            learning_rate=3e-3,
            eval_fraction=0.25,
            max_length=64,
            device="cpu",
        )
    )
    assert result.metrics["accuracy"] > 0.9 and result.heldout_sets > 5
    with Session(make_engine(url)) as session:
        row = session.exec(select(RewardModel)).one()
    assert row.name == "r1" and row.metrics["accuracy"] == result.metrics["accuracy"]
    folder = Path(row.adapter_path)
    base, _ = tiny_model_and_tokenizer()
    loaded = PeftModel.from_pretrained(base, folder, adapter_name="reward")  # a standard PEFT folder
    head = load_head(folder, base.config.hidden_size)
    assert (
        load_meta(folder).reward_std > 0
        and isinstance(loaded, PeftModel)
        and head.linear.weight.shape[1] == 64
    )
    lines = Path(row.snapshot_path).read_text().splitlines()
    assert json.loads(lines[0])["settings"]["reward"]["epochs"] == 3
    assert {json.loads(x)["split"] for x in lines[1:]} == {"train", "heldout"}


def test_trl_baseline_trains_and_lands_in_the_same_format(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=40)
    config = RewardConfig(
        model=checkpoint,
        home=str(tmp_path),
        db=url,
        trainer="trl",
        epochs=3,
        learning_rate=3e-3,
        max_length=64,
        device="cpu",
        batch_sets=8,
        eval_fraction=0.25,
    )
    result = run(config)
    folder = result.path
    assert (folder / "score_head.safetensors").exists() and (folder / "adapter_model.safetensors").exists()
    # scored by rankloop's own scorer after the copy: the trained weights arrived
    assert result.metrics["accuracy"] > 0.9 and result.train_sets == 6 * (40 - result.heldout_sets)


def test_processes_share_each_global_batch_take_the_same_steps_and_cover_every_group():
    from rlhf.train.reward import shard_batches

    for count in range(0, 11):
        groups = list(range(count))
        assert shard_batches(groups, 2, 0, 1) == [groups[i : i + 2] for i in range(0, count, 2)]
        for world in (2, 3, 4):
            per_step = 2 * world
            shards = [shard_batches(groups, per_step, rank, world) for rank in range(world)]
            assert len({len(s) for s in shards}) == 1, (count, world)
            assert len(shards[0]) == len(shard_batches(groups, per_step, 0, 1))  # the steps one process takes
            for step in zip(*shards, strict=True):  # each step's shares make up one global batch
                assert len({len(share) for share in step}) == 1
                assert sorted({g for share in step for g in share}) == sorted(
                    groups[groups.index(step[0][0]) : groups.index(step[0][0]) + per_step]
                )
            assert {g for s in shards for batch in s for g in batch} == set(groups)
    with pytest.raises(ValueError, match="batch_sets=3 does not split evenly over 2 processes"):
        shard_batches(list(range(6)), 3, 0, 2)
