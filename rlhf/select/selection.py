"""Choosing what to label next by the reward model's doubt.

With the admin's selection set to `uncertainty` (labeler/store/settings.py: `rankloop selection --mode uncertainty`),
the pre-generation worker writes `oversample` candidate sets for every set it keeps, scores each candidate's
answers with the latest reward model (one more adapter on the pool's shared base, no second copy), and keeps the
sets it is least sure of, with a share picked at random so that labels still cover the whole prompt distribution:

    doubt([0.1, 0.2, -1.5, 0.15])      # 0..1: mean over the answer pairs of 4 p (1 - p), p = sigmoid(s_i - s_j)
    disagreement([[0.1, 2.0], [1.0, -1.0]])   # per answer each member's score: 0..1 bits (BALD)
    choose([0.9, 0.1, 0.5, 0.7], keep=2, random_share=0.5, rng=random.Random(0))

Which measure: a reward model that saved its score head's precision (the default, `information.pt`) is read
by the information a label would add (rlhf/select/design.py: greedy, each kept set counted as known); the measures
below serve models saved without it (`rankloop reward --no_information`, or trained before it was saved).
`uncertainty()`: a reward model with several members (`rankloop reward --ensemble 4`: models with
their own adapters and seeds; or `--heads 4`: score heads on one adapter) is read by their disagreement, the
information a label would give about which member is right; it ignores answers all members find alike (a label
there is mostly noise). A one-head model is read by its doubt, the spread of its scores (a pair it scores
equally has p = 0.5). Every kept set stores how it was chosen
(`CompletionSet.selection`: by, measure, score, reward model, candidates), so a later study can tell
uncertainty-picked labels from random ones.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import torch

from models.policy import PolicyPool
from rlhf.train.reward_eval import score_set_members, set_features
from rlhf.train.scoring import RewardScorer, ScoreHead, ensemble_folders, load_head, load_meta


def doubt(scores: Sequence[float], scale: float = 1.0) -> float:
    """How unsure the reward model is of the order of one set's answers: the mean over their pairs of
    4 p (1 - p) with p = sigmoid((s_i - s_j) / scale); 1 when it scores all alike, near 0 when it orders every
    pair with confidence. `scale` is the model's reward std (scores in its units)."""
    pairs = list(combinations(scores, 2))
    if not pairs:
        return 0.0
    total = 0.0
    for a, b in pairs:
        p = 1.0 / (1.0 + math.exp(-(a - b) / scale))
        total += 4.0 * p * (1.0 - p)
    return total / len(pairs)


def _entropy(p: float) -> float:
    """Binary entropy in bits."""
    return -sum(x * math.log2(x) for x in (p, 1.0 - p) if x > 0)


def disagreement(members: Sequence[Sequence[float]], scale: float = 1.0) -> float:
    """How much the score-head members disagree on the order of one set's answers (`members`: per answer, each
    member's score): the mean over answer pairs of the mutual information between the pair's outcome and the
    member (BALD), H(mean_k p_k) - mean_k H(p_k) in bits, p_k = sigmoid((s_ik - s_jk) / scale). 0 where the
    members agree, even on a coin flip (answers alike: a label teaches little); up to 1 where they are each sure
    and split (what a label settles)."""
    pairs = list(combinations(members, 2))
    if not pairs:
        return 0.0
    total = 0.0
    for a, b in pairs:
        ps = [1.0 / (1.0 + math.exp(-(x - y) / scale)) for x, y in zip(a, b, strict=True)]
        total += _entropy(sum(ps) / len(ps)) - sum(_entropy(p) for p in ps) / len(ps)
    return total / len(pairs)


def uncertainty(sets: Sequence[Sequence[Sequence[float]]]) -> tuple[str, list[float]]:
    """Each set's uncertainty from its answers' member scores ([set][answer][member]), and which measure gave
    it: `disagreement` across score-head members where the model has several (reward `--heads`), else `doubt`
    of the mean score."""
    several = any(len(answer) > 1 for s in sets for answer in s)
    if several:
        return "disagreement", [disagreement(s) for s in sets]
    return "doubt", [doubt([sum(a) / len(a) for a in s]) for s in sets]


@dataclass(frozen=True)
class Choice:
    index: int  # of the candidate
    by: str  # "uncertainty" or "random"
    score: float  # its doubt


def choose(doubts: Sequence[float], *, keep: int, random_share: float, rng: random.Random) -> list[Choice]:
    """Which candidates to keep: each of the `keep` places goes, with probability `random_share`, to a candidate
    drawn at random (so small batches keep the share on average), the others to the highest doubt among the rest.
    Returned in candidate order."""
    if not 0 <= random_share <= 1:
        raise ValueError(f"random share must be between 0 and 1, got {random_share}")
    keep = min(keep, len(doubts))
    draws = sum(rng.random() < random_share for _ in range(keep))
    lucky = set(rng.sample(range(len(doubts)), draws))
    rest = sorted((i for i in range(len(doubts)) if i not in lucky), key=lambda i: -doubts[i])
    picked = {i: "random" for i in lucky} | {i: "uncertainty" for i in rest[: keep - len(lucky)]}
    return [Choice(i, by, doubts[i]) for i, by in sorted(picked.items())]


class PoolScorer:
    """Scores answers with a reward model loaded as a named adapter on a PolicyPool's base, under the pool's
    lock, then gives generation its active version back. Adapters and heads are loaded once per model."""

    def __init__(self, pool: PolicyPool, max_length: int = 384):
        self.pool, self.max_length = pool, max_length
        self._heads: dict[str, tuple[ScoreHead, float]] = {}
        self._folders: dict[str, list[Path]] = {}  # a saved model's members never change: listed once

    def score(self, folder: str, sets: Sequence[tuple[Sequence[dict], Sequence[str]]]) -> list[list[float]]:
        """Rewards (in units of the model's std) for every (prompt, answers) set: the model's own, the one PPO
        reads (an ensemble's other members only choose what to label)."""
        return [[sum(m) / len(m) for m in row] for row in self._score_heads(Path(folder), sets)]

    def score_members(
        self, folder: str, sets: Sequence[tuple[Sequence[dict], Sequence[str]]]
    ) -> list[list[list[float]]]:
        """Every member's reward (in units of its model's std) per answer: [set][answer][member]. The members
        are the model's score heads, or, for a model trained with `--ensemble`, the ensemble's models (each the
        mean of its heads)."""
        if folder not in self._folders:
            self._folders[folder] = ensemble_folders(Path(folder))
        folders = self._folders[folder]
        per_model = [self._score_heads(f, sets) for f in folders]
        if len(per_model) == 1:
            return per_model[0]
        return [
            [[sum(heads) / len(heads) for heads in answer] for answer in zip(*rows, strict=True)]
            for rows in zip(*per_model, strict=True)
        ]

    def _score_heads(
        self, folder: Path, sets: Sequence[tuple[Sequence[dict], Sequence[str]]]
    ) -> list[list[list[float]]]:
        """One saved model's score heads per answer, in units of its std: [set][answer][head]."""
        with self._using(folder) as (scorer, std):
            rows = score_set_members(scorer, self.pool.tokenizer, sets, self.max_length)
        return [[[x / std for x in members] for members in row] for row in rows]

    def features(
        self, folder: str, sets: Sequence[tuple[Sequence[dict], Sequence[str]]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per set: its answers' last hidden states and raw rewards under the model (rlhf/select/design.py reads them)."""
        with self._using(Path(folder)) as (scorer, _):
            return set_features(scorer, self.pool.tokenizer, sets, self.max_length)

    @contextmanager
    def _using(self, folder: Path) -> Iterator[tuple[RewardScorer, float]]:
        """The saved model as a scorer (its adapter active, under the pool's lock) and its reward std."""
        # one adapter per folder (models of different homes share names such as reward-r1)
        name = "reward-" + hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
        with self.pool.lock:
            model = self.pool.load_adapter(name, str(folder))
            if name not in self._heads:
                hidden = model.config.hidden_size
                head = load_head(folder, hidden).to(model.device).eval()
                self._heads[name] = (head, max(load_meta(folder).reward_std, 1e-6))
            head, std = self._heads[name]
            with self.pool.using_adapter(name):
                yield RewardScorer(model, head), std
