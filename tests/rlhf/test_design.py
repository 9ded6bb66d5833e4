"""The information a label would add (rlhf/select/design.py): pair columns, the head's precision, greedy choice."""

import random

import pytest
import torch

from rlhf.select.design import Design
from rlhf.train.information import pair_columns, precision


def _set(*rows: list[float], rewards: list[float] | None = None) -> torch.Tensor:
    hidden = torch.tensor(rows, dtype=torch.float64)
    return pair_columns(hidden, torch.tensor(rewards or [0.0] * len(rows), dtype=torch.float64))


def test_pair_columns_weigh_each_answer_difference_by_its_bradley_terry_weight():
    w = _set([1.0, 0.0], [0.0, 0.0], [0.0, 2.0], rewards=[0.0, 0.0, 2.0])
    assert w.shape == (2, 3)  # hidden size x the 3 answer pairs
    assert w[:, 0].tolist() == pytest.approx([0.5, 0.0])  # p = 0.5: sqrt(1/4) (h_a - h_b)
    p = torch.sigmoid(torch.tensor(-2.0)).item()
    assert w[:, 1].tolist() == pytest.approx([(p * (1 - p)) ** 0.5, -2 * (p * (1 - p)) ** 0.5])
    assert _set([1.0, 0.0]).shape == (2, 0)  # one answer: no pair


def test_alike_answers_teach_nothing_and_known_directions_teach_less_than_new_ones():
    known = [_set([1.0, 0.0], [0.0, 0.0]) for _ in range(20)]  # 20 labeled pairs, all along the first axis
    design = Design(precision(known, size=2))
    alike = _set([0.3, 0.3], [0.3, 0.3])
    along, across = _set([1.0, 0.0], [0.0, 0.0]), _set([0.0, 1.0], [0.0, 0.0])
    assert design.gain(alike) == 0.0
    assert 0 < design.gain(along) < design.gain(across)


def test_adding_a_set_is_the_same_as_refitting_the_precision_with_it():
    rng = torch.Generator().manual_seed(0)
    sets = [
        pair_columns(torch.randn(4, 3, generator=rng, dtype=torch.float64), torch.zeros(4)) for _ in range(3)
    ]
    design = Design(precision(sets[:2], size=3))
    design.add(sets[2])
    assert torch.allclose(design.cov, torch.linalg.inv(precision(sets, size=3)))


def test_choose_does_not_spend_two_places_on_the_same_question():
    design = Design(precision([], size=2))
    same = _set([2.0, 0.0], [0.0, 0.0])
    other = _set([0.0, 2.0], [0.0, 0.0])  # as informative alone, in a direction of its own
    choices = design.choose([same, same.clone(), other], keep=2, random_share=0.0, rng=random.Random(0))
    # the two copies each carry the most information alone; after one is kept the other teaches less
    assert [c.index for c in choices] in ([0, 2], [1, 2])
    assert all(c.by == "uncertainty" and c.score > 0 for c in choices)


def test_choose_keeps_a_random_share_and_counts_it_as_known():
    design = Design(precision([], size=2))
    sets = [_set([float(i), 0.0], [0.0, 1.0]) for i in range(6)]
    choices = design.choose(sets, keep=3, random_share=1.0, rng=random.Random(1))
    assert len(choices) == 3 and all(c.by == "random" for c in choices)
    assert torch.linalg.det(design.cov).item() < 1.0  # the prior's covariance shrank: the kept sets count
    with pytest.raises(ValueError, match="random share must be between 0 and 1, got 2"):
        design.choose(sets, keep=1, random_share=2.0, rng=random.Random(0))
