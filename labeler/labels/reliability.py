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
        weight = _log_odds(self.accuracy[labeler])
        return max(weight, 0.0) if labeler in self.judges else weight

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
    labelers that are programs, whose votes never count reversed."""
    gold = gold or {}
    grouped = by_comparison(votes)
    counts: dict[Labeler, int] = defaultdict(int)
    for v in votes:
        counts[v.labeler] += 1
    accuracy = dict.fromkeys(counts, start)
    posteriors: dict[Comparison, float] = {}
    done = 0
    for done in range(1, iterations + 1):
        current = Reliability(accuracy, dict(counts), done, judges=judges)
        posteriors = {
            c: (1.0 if gold[c] else 0.0) if c in gold else current.posterior(vs) for c, vs in grouped.items()
        }
        right: dict[Labeler, float] = defaultdict(float)
        for c, vs in grouped.items():
            p = posteriors[c]
            for v in vs:
                right[v.labeler] += p if v.first_wins else 1 - p
        new = {k: (right[k] + 1) / (counts[k] + 2) for k in counts}
        change = max((abs(new[k] - accuracy[k]) for k in counts), default=0.0)
        accuracy = new
        if change < tolerance:
            break
    return Reliability(accuracy, dict(counts), done, posteriors, judges)


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
