"""How far to trust each labeler: a one-coin Dawid-Skene model over pairwise votes, fitted by EM (torch-free).

Every strict pair a ranking implies is one vote on a comparison (set, answer a, answer b). Each comparison has a
hidden true order; labeler k reports it correctly with probability `accuracy[k]`, whatever the pair. EM alternates
the posterior of every comparison's order given the votes (each vote weighs log(acc / (1 - acc)), so a labeler
below 0.5 counts reversed and one at 0.5 not at all) and each labeler's accuracy given those posteriors (with one
pseudo-vote each way). Comparisons with a known order (gold sets) are clamped to it, which anchors the scale.
Judges (programs, labeler/labels/judges.py) are never read reversed: one below chance counts for nothing.
Everyone starts at `start` (> 0.5: labelers are assumed better than chance until the votes say otherwise).

    fit = fit_reliability(votes_from_sets(sets))
    fit.accuracy["alice"], fit.weight("alice"), fit.posterior(votes_of_one_pair)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from labeler.labels.pairs import FlagMode, RankingView, effective_ranks

Labeler = str | int
Comparison = tuple[int, int, int]  # (set id, smaller completion id, larger completion id)
MAX_WEIGHT = 4.0  # log-odds cap: an accuracy of about 0.98, so no labeler outvotes everyone alone


@dataclass(frozen=True)
class Vote:
    labeler: Labeler
    comparison: Comparison
    first_wins: bool  # the labeler ranked the smaller completion id above the larger
    gap: int = 1  # how many ranks apart the labeler put the two answers


def votes_from_sets(
    sets: Iterable[tuple[int, Sequence[RankingView]]], flagged: FlagMode = "drop"
) -> list[Vote]:
    """Every strict pair of every ranking as a vote (ties, skips and "none acceptable" cast none)."""
    votes = []
    for set_id, rankings in sets:
        for r in rankings:
            if r.skipped or r.none_acceptable or r.labeler is None:
                continue
            ranks = effective_ranks(r, flagged)
            for a, b in combinations(sorted(ranks), 2):
                if ranks[a] != ranks[b]:
                    votes.append(
                        Vote(r.labeler, (set_id, a, b), ranks[a] < ranks[b], abs(ranks[a] - ranks[b]))
                    )
    return votes


def by_comparison(votes: Iterable[Vote]) -> dict[Comparison, list[Vote]]:
    out: dict[Comparison, list[Vote]] = defaultdict(list)
    for v in votes:
        out[v.comparison].append(v)
    return out


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-MAX_WEIGHT, min(MAX_WEIGHT, math.log(p / (1 - p))))


def _vote_weight(accuracy: float, judge: bool) -> float:
    """The log-odds weight of one vote by a labeler of this accuracy; a judge's never goes below 0."""
    weight = _log_odds(accuracy)
    return max(weight, 0.0) if judge else weight


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


@dataclass(frozen=True)
class Reliability:
    accuracy: dict[Labeler, float]  # estimated P(vote matches the true order)
    votes: dict[Labeler, int]
    iterations: int
    posteriors: dict[Comparison, float] = field(default_factory=dict)  # P(first wins) per comparison
    judges: frozenset[Labeler] = frozenset()  # weighed 0 below chance, never reversed

    def weight(self, labeler: Labeler) -> float:
        """The log-odds weight of one vote (negative: the labeler's votes count reversed; a judge's never goes
        below 0); 0 if unknown."""
        if labeler not in self.accuracy:
            return 0.0
        return _vote_weight(self.accuracy[labeler], labeler in self.judges)

    def posterior(self, votes: Iterable[Vote]) -> float:
        """P(first wins) for one comparison's votes under these accuracies (prior 0.5)."""
        return _sigmoid(sum(self.weight(v.labeler) * (1 if v.first_wins else -1) for v in votes))

    def ranked(self) -> list[tuple[Labeler, float]]:
        """Labelers from the most to the least reliable."""
        return sorted(self.accuracy.items(), key=lambda kv: (-kv[1], str(kv[0])))


def fit_reliability(
    votes: Sequence[Vote],
    *,
    gold: dict[Comparison, bool] | None = None,
    start: float = 0.7,
    iterations: int = 100,
    tolerance: float = 1e-6,
    judges: frozenset[Labeler] = frozenset(),
) -> Reliability:
    """EM for the one-coin model. `gold`: comparisons whose order is known (True: the first wins); `judges`: the
    labelers that are programs, whose votes never count reversed. Each step is a few array passes over the votes
    (1M votes: about a second for the whole fit)."""
    gold = gold or {}
    comparisons = list(dict.fromkeys(v.comparison for v in votes))
    labelers = list(dict.fromkeys(v.labeler for v in votes))
    where = {c: i for i, c in enumerate(comparisons)}
    who = {k: i for i, k in enumerate(labelers)}
    vote_comparison = np.fromiter((where[v.comparison] for v in votes), dtype=np.int64, count=len(votes))
    vote_labeler = np.fromiter((who[v.labeler] for v in votes), dtype=np.int64, count=len(votes))
    first_wins = np.fromiter((v.first_wins for v in votes), dtype=bool, count=len(votes))
    sign = np.where(first_wins, 1.0, -1.0)
    counts = np.bincount(vote_labeler, minlength=len(labelers)).astype(np.float64)
    known = np.array([where[c] for c in gold if c in where], dtype=np.int64)
    known_first = np.array([1.0 if gold[c] else 0.0 for c in gold if c in where])
    accuracy = np.full(len(labelers), start)
    posterior = np.full(len(comparisons), 0.5)
    done = 0
    for step in range(1, iterations + 1):
        done = step
        weight = np.array(
            [_vote_weight(a, k in judges) for a, k in zip(accuracy.tolist(), labelers, strict=True)]
        )
        evidence = np.bincount(
            vote_comparison, weights=weight[vote_labeler] * sign, minlength=len(comparisons)
        )
        posterior = 0.5 * (1 + np.tanh(evidence / 2))  # the sigmoid, without overflow
        posterior[known] = known_first
        p = posterior[vote_comparison]
        right = np.bincount(vote_labeler, weights=np.where(first_wins, p, 1 - p), minlength=len(labelers))
        new = (right + 1) / (counts + 2)
        change = float(np.max(np.abs(new - accuracy), initial=0.0))
        accuracy = new
        if change < tolerance:
            break
    return Reliability(
        dict(zip(labelers, accuracy.tolist(), strict=True)),
        dict(zip(labelers, counts.astype(int).tolist(), strict=True)),
        done,
        dict(zip(comparisons, posterior.tolist(), strict=True)),
        judges,
    )


@dataclass(frozen=True)
class WeightedPair:
    """A consensus pair under reliability weights: `confidence` = P(chosen wins), `weight` = 2 * confidence - 1
    (how much the pair should count: 0 when the weighted votes cancel)."""

    chosen: int
    rejected: int
    margin: float  # mean rank difference among the votes for `chosen` (1 when none agree)
    confidence: float

    @property
    def weight(self) -> float:
        return 2 * self.confidence - 1


def weighted_pairs(
    set_id: int, rankings: Sequence[RankingView], fit: Reliability, flagged: FlagMode = "drop"
) -> list[WeightedPair]:
    """The set's comparisons decided by the reliability-weighted posterior instead of a head count; pairs whose
    votes cancel exactly are left out. Labelers the fit has not seen weigh 0."""
    out = []
    for (_, a, b), vs in sorted(by_comparison(votes_from_sets([(set_id, rankings)], flagged)).items()):
        p = fit.posterior(vs)
        if p == 0.5:
            continue
        first = p > 0.5
        agreeing = [v.gap for v in vs if v.first_wins == first]
        margin = sum(agreeing) / len(agreeing) if agreeing else 1.0
        out.append(WeightedPair(a if first else b, b if first else a, margin, max(p, 1 - p)))
    return out
