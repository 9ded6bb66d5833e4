"""Human evaluation of a new policy: sets that mix completions of version K+1 and version K (which wrote which is
hidden from labelers, stored on each completion) give a win-rate with a Wilson confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlmodel import Session, col, select

from labeler.labels.dataset import load_set_rankings
from labeler.labels.pairs import RankingView, effective_ranks
from labeler.store.tables import Completion


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int
    rate: float | None  # (wins + ties/2) / comparisons
    low: float | None
    high: float | None

    @property
    def comparisons(self) -> int:
        return self.wins + self.losses + self.ties


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rate_from(rankings: list[tuple[RankingView, dict[int, int]]], new_id: int, old_id: int) -> WinRate:
    """`rankings`: (ranking, completion id -> policy version id). Flagged answers lose to ranked ones."""
    wins = losses = ties = 0
    for ranking, version_of in rankings:
        if ranking.skipped or ranking.none_acceptable:
            continue
        ranks = effective_ranks(ranking, "reject")
        new = [r for c, r in ranks.items() if version_of.get(c) == new_id]
        old = [r for c, r in ranks.items() if version_of.get(c) == old_id]
        for a in new:
            for b in old:
                wins += a < b
                losses += a > b
                ties += a == b
    n = wins + losses + ties
    if n == 0:
        return WinRate(0, 0, 0, None, None, None)
    low, high = wilson_interval(wins + ties / 2, n)
    return WinRate(wins, losses, ties, (wins + ties / 2) / n, low, high)


def human_win_rate(*, session: Session, new_version_id: int, old_version_id: int) -> WinRate:
    """Win-rate of one version over another from every ranking of sets that hold completions of both."""
    rows = session.exec(
        select(Completion.set_id, Completion.id, Completion.policy_version_id).where(
            col(Completion.policy_version_id).in_([new_version_id, old_version_id])
        )
    ).all()
    versions_by_set: dict[int, dict[int, int]] = {}
    for set_id, cid, pv in rows:
        if cid is not None and pv is not None:
            versions_by_set.setdefault(set_id, {})[cid] = pv
    mixed = [s for s, v in versions_by_set.items() if {new_version_id, old_version_id} <= set(v.values())]
    pairs = [
        (view, versions_by_set[s.set_id])
        for s in load_set_rankings(session=session, set_ids=mixed)
        for view in s.rankings
    ]
    return win_rate_from(pairs, new_version_id, old_version_id)
