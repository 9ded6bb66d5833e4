"""What a reward model's labels taught its head: the head's precision A = prior I + sum over the labeled sets'
answer pairs of w w^T, with w = sqrt(p (1 - p)) (h_a - h_b) (its Laplace approximation; rlhf/select/design.py
explains its use). The reward stage saves it next to the model (`information.pt`); the pre-generation worker's
selection reads it to choose the sets a label would teach most.

    a = head_precision(scorer, tokenizer, labeled_groups, max_length=256)
    save_information(folder, a)          # load_information(folder) -> a (float64), or None
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

import torch

from rlhf.train.reward_data import Group
from rlhf.train.reward_eval import set_features
from rlhf.train.scoring import RewardScorer

INFORMATION_FILE = "information.pt"
PRIOR = 1.0  # prior precision of the head (ridge): what A is before any label


def pair_columns(hidden: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """[hidden, pairs]: one column sqrt(p (1 - p)) (h_a - h_b) per answer pair of one set (`hidden` [answers,
    hidden size], `rewards` [answers] in the model's raw units)."""
    hidden, rewards = hidden.double(), rewards.double()
    pairs = list(combinations(range(hidden.shape[0]), 2))
    if not pairs:
        return hidden.new_zeros(hidden.shape[1], 0)
    a, b = (torch.tensor(side) for side in zip(*pairs, strict=True))
    p = torch.sigmoid(rewards[a] - rewards[b])
    return ((hidden[a] - hidden[b]) * (p * (1 - p)).sqrt().unsqueeze(1)).T


def precision(columns: Iterable[torch.Tensor], size: int, prior: float = PRIOR) -> torch.Tensor:
    """A = prior I + sum W W^T over the labeled sets' pair columns: the head's precision."""
    a = prior * torch.eye(size, dtype=torch.float64)
    for w in columns:
        a += w @ w.T
    return a


def save_information(folder: Path, a: torch.Tensor) -> None:
    torch.save({"precision": a.float(), "prior": PRIOR}, folder / INFORMATION_FILE)


def load_information(folder: Path) -> torch.Tensor | None:
    """The saved precision, or None for a model saved without it (trained before it was written, or with
    `rankloop reward --no_information`)."""
    path = folder / INFORMATION_FILE
    if not path.is_file():
        return None
    return torch.load(path, weights_only=True)["precision"].double()


def head_precision(scorer: RewardScorer, tokenizer, groups: Sequence[Group], max_length: int) -> torch.Tensor:
    """The trained head's precision over `groups` (the labeled sets): one scoring pass over their answers."""
    features = set_features(scorer, tokenizer, [(g.prompt, g.texts) for g in groups], max_length)
    size = scorer.head.linear.in_features
    return precision((pair_columns(h, r) for h, r in features), size)
