"""Reliability-weighted reward training (`labeler_weights=reliability`): pairs decided by weighted votes, each
weighing how sure the weighted consensus is, in the Bradley-Terry loss."""

import pytest
import torch
import torch.nn.functional as F
from sqlmodel import Session

from labeler.labels.dataset import load_set_rankings
from labeler.labels.pairs import PairSettings
from labeler.labels.reliability import fit_reliability, votes_from_sets
from labeler.store.db import make_engine
from labeler.store.users import get_user
from rlhf.train.configs import RewardConfig
from rlhf.train.losses import bradley_terry_loss, ranking_batch_loss
from rlhf.train.reward import run
from rlhf.train.reward_data import load_groups
from tests.rlhf.synthetic import LABELERS_WITH_ADVERSARY as LABELERS
from tests.rlhf.synthetic import add_ranked_sets, synthetic_store


def test_weighted_bradley_terry_is_the_weighted_mean_of_per_pair_losses():
    chosen, rejected, w = (
        torch.tensor([1.0, 0.0, 2.0]),
        torch.tensor([0.0, 1.0, 2.5]),
        torch.tensor([1.0, 0.5, 0.0]),
    )
    expected = (w * -F.logsigmoid(chosen - rejected)).mean()
    assert torch.allclose(bradley_terry_loss(chosen, rejected, weights=w), expected)
    scores = torch.tensor([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="strict pairs only"):
        ranking_batch_loss(scores, torch.tensor([[0, 1]]), ties=torch.tensor([True]), weights=torch.ones(1))


def test_weighted_groups_follow_the_honest_labelers_and_training_records_reliability(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=0)
    add_ranked_sets(url, 40, labelers=LABELERS)
    with Session(make_engine(url)) as s:
        sets = load_set_rankings(session=s)
        fit = fit_reliability(votes_from_sets((x.set_id, x.rankings) for x in sets))
        adversary = get_user(session=s, name="adversary").id
        groups = load_groups(session=s, settings=PairSettings(), sets=sets, reliability=fit)
    assert fit.ranked()[-1][0] == adversary and fit.accuracy[adversary] < 0.2
    for g in groups:
        assert len(g.weights) == len(g.pairs) == 6 and min(g.weights) > 0.9
        for (
            c,
            r,
            _,
            confidence,
        ) in g.pairs:  # the chosen answer says "good" more often, as the honest two rank
            assert g.texts[c].count(" good") > g.texts[r].count(" good") and confidence > 0.95

    config = RewardConfig(model=checkpoint, home=str(tmp_path), db=url, epochs=2, learning_rate=3e-3, eval_fraction=0.25, max_length=64, device="cpu", labeler_weights="reliability")  # fmt: skip
    result = run(config)
    ranked = list(result.metrics["labeler_reliability"])
    assert ranked[-1] == str(adversary) and result.metrics["accuracy"] > 0.8


def test_trl_and_ties_refuse_weights(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=4)
    base = {
        "model": checkpoint,
        "home": str(tmp_path),
        "db": url,
        "device": "cpu",
        "labeler_weights": "reliability",
    }
    with pytest.raises(ValueError, match="unweighted strict pairs only"):
        run(RewardConfig(**base, trainer="trl"))
    with pytest.raises(ValueError, match="turn keep_ties off"):
        run(RewardConfig(**base, keep_ties=True))
