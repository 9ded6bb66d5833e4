"""Ties and "none acceptable" carry signal: Davidson's tie likelihood by hand and in training (tie pairs pull two
scores together), and the below-reference term for answers of sets marked "none acceptable"."""

from __future__ import annotations

import math
import random
import uuid

import pytest
import torch
from sqlmodel import Session

from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, get_or_add_prompt, submit_ranking
from labeler.store.tables import id_of
from labeler.store.users import add_user
from models.tiny import save_tiny_checkpoint
from rlhf.train import reward
from rlhf.train.configs import RewardConfig
from rlhf.train.losses import bradley_terry_loss, davidson_loss, ranking_batch_loss
from tests.rlhf.synthetic import answer


def test_davidson_by_hand():
    d = torch.tensor([0.0, 2.0])
    zero = torch.zeros(2)
    z = torch.tensor([3.0, math.e + 1 / math.e + 1])  # e^(d/2) + e^(-d/2) + nu, nu = 1
    strict = davidson_loss(d, zero, torch.tensor([False, False]))
    tie = davidson_loss(d, zero, torch.tensor([True, True]))
    assert strict.item() == pytest.approx((torch.log(z) - d / 2).mean().item())
    assert tie.item() == pytest.approx(torch.log(z).mean().item())
    # without ties (nu -> 0) a strict pair is plain Bradley-Terry
    bt = bradley_terry_loss(d, zero)
    assert davidson_loss(d, zero, torch.tensor([False, False]), log_strength=-60.0).item() == pytest.approx(
        bt.item()
    )


def test_a_tie_pulls_scores_together_and_a_win_pushes_them_apart():
    a = torch.tensor([1.0], requires_grad=True)
    b = torch.tensor([0.0], requires_grad=True)
    davidson_loss(a, b, torch.tensor([True])).backward()
    assert a.grad is not None and a.grad.item() > 0  # descent lowers a toward b
    a.grad = None
    davidson_loss(a, b, torch.tensor([False])).backward()
    assert a.grad.item() < 0  # descent raises a further above b
    scores = torch.tensor([1.0, 0.0, 0.5])
    pairs = torch.tensor([[0, 1], [1, 2]])
    ties = torch.tensor([False, True])
    assert ranking_batch_loss(scores, pairs, ties=ties).item() == pytest.approx(
        davidson_loss(scores[[0, 1]], scores[[1, 2]], ties).item()
    )


def store_with_ties_and_rejections(tmp_path, sets=40, rejected=8, seed=0):
    """Sets of four answers with 'good' counts [0, 2, 2, 3]: the labeler ties the two 2s; and `rejected`
    extra sets of answers saying 'bad', which the labeler marks "none acceptable"."""
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'rankloop.db'}"
    checkpoint = str(save_tiny_checkpoint(tmp_path / "tiny"))
    with Session(make_engine(url)) as s:
        user = id_of(add_user(session=s, name="sim", password="sim-password"))
        pv = ensure_initial_policy(session=s, base_model=checkpoint)
        for i in range(sets + rejected):
            prompt = get_or_add_prompt(session=s, messages=[{"role": "user", "content": f"question {i}"}])
            goods = [0, 2, 2, 3] if i < sets else None
            texts = (
                [answer(rng, g) for g in goods]
                if goods
                else [f"{answer(rng, 0)}{' bad' * 3}" for _ in range(4)]
            )
            add_completion_set(session=s, prompt_id=id_of(prompt), completions=[CompletionIn(t) for t in texts], policy_version_id=pv.id)  # fmt: skip
        while (leased := lease_next_set(session=s, user_id=user)) is not None:
            cs = leased.completions
            if " bad" in cs[0].text:
                ranking = RankingIn(set_id=id_of(leased.set), user_id=user, submission_id=uuid.uuid4().hex, none_acceptable=True)  # fmt: skip
            else:
                levels = sorted({c.text.count(" good") for c in cs}, reverse=True)
                ranks = {id_of(c): levels.index(c.text.count(" good")) + 1 for c in cs}  # equal goods tie
                ranking = RankingIn(set_id=id_of(leased.set), user_id=user, submission_id=uuid.uuid4().hex, ranks=ranks)  # fmt: skip
            submit_ranking(session=s, ranking=ranking)
    return url, checkpoint


def test_reward_training_uses_ties_and_none_acceptable_sets_by_setting(tmp_path):
    url, checkpoint = store_with_ties_and_rejections(tmp_path)
    common = {"home": str(tmp_path), "db": url, "model": checkpoint, "epochs": 3, "learning_rate": 3e-3, "max_length": 64, "device": "cpu", "normalize": False}  # fmt: skip
    plain = reward.run(RewardConfig(**common))
    both = reward.run(RewardConfig(**common, keep_ties=True, none_acceptable="below_reference"))
    assert plain.metrics["tie_pairs"] == 0 and both.metrics["tie_pairs"] > 0
    assert both.metrics["accuracy"] > 0.8  # strict pairs still learned
    assert both.train_sets > plain.train_sets  # the none-acceptable sets are trained on
    assert plain.metrics["none_acceptable_mean"] is None
    if both.heldout_sets and both.metrics["none_acceptable_mean"] is not None:
        assert both.metrics["none_acceptable_mean"] < both.metrics["reward_mean"]
    with pytest.raises(ValueError, match="trl's RewardTrainer takes unweighted strict pairs only"):
        reward.run(RewardConfig(**common, trainer="trl", keep_ties=True))
