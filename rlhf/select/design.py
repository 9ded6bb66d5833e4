"""Choosing what to label next by the information a label would add (an optimal design over the reward model's
last layer).

The reward is a linear head on the base's last hidden state h, so a ranked pair (a, b) teaches the head about the
direction h_a - h_b, as much as its Bradley-Terry weight p (1 - p) says (p = sigmoid(r_a - r_b)). Summed over the
pairs a model was trained on (plus a prior), that is the head's precision A (its Laplace approximation); the
reward model saves it next to its weights (`information.pt`, written by rlhf/train/reward.py). A candidate set's
information is then

    gain = log det(I + W^T A^-1 W) / ln 2    (bits; W: one column sqrt(p (1 - p)) (h_a - h_b) per answer pair)

large where the set's answers differ in directions the labels so far have not pinned down, small where they
are alike (nothing to learn) or already well known. It needs one head: unlike the members' disagreement it works
for the default reward model. Sets are chosen greedily: each kept set is added to A before the next is scored,
so one batch does not spend its labels on the same question twice (`Design.choose`).

    design = Design(load_information(folder))
    columns = [pair_columns(hidden, rewards) for hidden, rewards in scorer.features(folder, sets)]
    design.choose(columns, keep=4, random_share=0.25, rng=random.Random(0))
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from rlhf.select.selection import Choice, PoolScorer
from rlhf.train.information import load_information, pair_columns


class Design:
    """The head's covariance A^-1, updated as sets are chosen (they will be labeled, so they count as known)."""

    def __init__(self, a: torch.Tensor):
        self.cov = torch.linalg.inv(a.double())

    @classmethod
    def load(cls, folder: Path) -> Design | None:
        """The design of the reward model saved in `folder`, or None where it saved no precision."""
        a = load_information(folder)
        return None if a is None else cls(a)

    def gain(self, w: torch.Tensor) -> float:
        """Bits a set with pair columns `w` would add."""
        if w.shape[1] == 0:
            return 0.0
        m = torch.eye(w.shape[1], dtype=torch.float64) + w.T @ self.cov @ w
        return torch.logdet(m).item() / math.log(2)

    def add(self, w: torch.Tensor) -> None:
        """Count a set as labeled (Woodbury: A^-1 <- A^-1 - A^-1 W (I + W^T A^-1 W)^-1 W^T A^-1)."""
        if w.shape[1] == 0:
            return
        cw = self.cov @ w
        m = torch.eye(w.shape[1], dtype=torch.float64) + w.T @ cw
        self.cov = self.cov - cw @ torch.linalg.solve(m, cw.T)

    def choose(
        self, columns: Sequence[torch.Tensor], *, keep: int, random_share: float, rng: random.Random
    ) -> list[Choice]:
        """Which candidates to keep: each place goes with probability `random_share` to a candidate drawn at
        random, the others, one after another, to the candidate with the most information given everything
        kept before it. Every kept set is added to the design. Returned in candidate order, each with its gain
        when it was taken."""
        if not 0 <= random_share <= 1:
            raise ValueError(f"random share must be between 0 and 1, got {random_share}")
        keep = min(keep, len(columns))
        draws = sum(rng.random() < random_share for _ in range(keep))
        picked: dict[int, Choice] = {}
        for i in rng.sample(range(len(columns)), draws):
            picked[i] = Choice(i, "random", self.gain(columns[i]))
            self.add(columns[i])
        while len(picked) < keep:
            gains = {i: self.gain(w) for i, w in enumerate(columns) if i not in picked}
            best = max(gains, key=lambda i: gains[i])
            picked[best] = Choice(best, "uncertainty", gains[best])
            self.add(columns[best])
        return [picked[i] for i in sorted(picked)]

    def choose_sets(
        self,
        scorer: PoolScorer,
        folder: str,
        sets: Sequence[tuple[Sequence[dict], Sequence[str]]],
        *,
        keep: int,
        random_share: float,
        rng: random.Random,
    ) -> list[Choice]:
        """`choose` among candidate (prompt, answers) sets, their answers read by the model in `folder` (what
        the pre-generation worker does)."""
        columns = [pair_columns(h, r) for h, r in scorer.features(folder, sets)]
        return self.choose(columns, keep=keep, random_share=random_share, rng=rng)
