"""Merging several labelers' rankings of one set, and agreement metrics.

Consensus per pair is a majority vote (the vote counts are kept; agreement = winning votes / votes cast,
ties counted as cast votes for neither side). The merged order uses ranked pairs (Tideman): majorities are
locked in from strongest to weakest unless one would close a cycle; the order is then read off the locked
graph, with completions that no locked edge separates sharing a rank.

Agreement: Krippendorff's alpha with the ordinal metric over sets ranked by 2+ labelers, and per labeler the
mean Kendall tau-b between their ranking and the consensus order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TypeVar

from labeler.labels.pairs import PairSettings, RankingView, casts_votes, effective_ranks, ranking_to_pairs

K = TypeVar("K", int, str)


@dataclass(frozen=True)
class ConsensusPair:
    chosen: int
    rejected: int
    votes_for: int  # labelers preferring chosen
    votes_against: int  # labelers preferring rejected
    ties: int
    margin: float  # mean rank difference among the labelers who voted for `chosen`

    @property
    def votes(self) -> int:
        return self.votes_for + self.votes_against + self.ties

    @property
    def agreement(self) -> float:
        return self.votes_for / self.votes if self.votes else 0.0


def _voters(rankings: Sequence[RankingView]) -> list[RankingView]:
    return [r for r in rankings if casts_votes(r)]


def pair_votes(
    rankings: Sequence[RankingView], settings: PairSettings = PairSettings()
) -> list[ConsensusPair]:
    """Majority vote per unordered pair over the rankings that rank both completions.

    With `keep_ties`, a pair whose votes are mostly ties is kept as a tie (margin 0; its tie votes count as
    `votes_for`).
    Pairs below `settings.min_agreement` are dropped.
    """
    voters = _voters(rankings)
    if len(voters) == 1:  # fast path: one labeler, every pair is unanimous
        return [
            ConsensusPair(p.chosen, p.rejected, 1, 0, 0, p.margin)
            for p in ranking_to_pairs(voters[0], settings)
        ]
    wins: dict[tuple[int, int], list[float]] = defaultdict(list)
    tie_count: Counter[tuple[int, int]] = Counter()
    for ranking in voters:
        ranks = effective_ranks(ranking, settings.flagged)
        for a, b in combinations(sorted(ranks), 2):
            diff = ranks[b] - ranks[a]
            if diff > 0:
                wins[(a, b)].append(diff)
            elif diff < 0:
                wins[(b, a)].append(-diff)
            else:
                tie_count[(a, b)] += 1
    out = []
    for a, b in sorted({tuple(sorted(k)) for k in wins} | set(tie_count)):
        ab, ba, ties = wins.get((a, b), []), wins.get((b, a), []), tie_count[(a, b)]
        if len(ab) == len(ba) and (ties == 0 or not settings.keep_ties):
            continue  # no majority either way
        if ties > max(len(ab), len(ba)):
            if settings.keep_ties:
                out.append(ConsensusPair(a, b, ties, len(ab) + len(ba), 0, 0.0))
            continue
        win, lose, chosen, rejected = (ab, ba, a, b) if len(ab) > len(ba) else (ba, ab, b, a)
        out.append(ConsensusPair(chosen, rejected, len(win), len(lose), ties, sum(win) / len(win)))
    return [p for p in out if p.agreement >= settings.min_agreement]


def _reaches(edges: dict[int, set[int]], start: int, goal: int) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(edges[node])
    return False


def ranked_pairs_order(items: Sequence[int], pairs: Sequence[ConsensusPair]) -> dict[int, int]:
    """Tideman's ranked pairs: a merged rank per item (1 = best; items no locked edge separates share a rank)."""
    locked: dict[int, set[int]] = {i: set() for i in items}
    strict = [p for p in pairs if p.votes_for > p.votes_against]
    for p in sorted(strict, key=lambda p: (-p.votes_for, p.votes_against, p.chosen, p.rejected)):
        if not _reaches(locked, p.rejected, p.chosen):
            locked[p.chosen].add(p.rejected)
    indegree = Counter(r for targets in locked.values() for r in targets)
    remaining, ranks, rank = set(items), {}, 1
    while remaining:
        layer = sorted(i for i in remaining if indegree[i] == 0)
        for i in layer:
            ranks[i] = rank
            for r in locked[i]:
                indegree[r] -= 1
        remaining -= set(layer)
        rank += len(layer)
    return ranks


def consensus_order(
    rankings: Sequence[RankingView], settings: PairSettings = PairSettings()
) -> dict[int, int]:
    """The merged ranking of a set from all labelers' votes (no agreement filtering)."""
    items = sorted({cid for r in _voters(rankings) for cid in effective_ranks(r, settings.flagged)})
    votes = pair_votes(rankings, PairSettings(keep_ties=False, flagged=settings.flagged))
    return ranked_pairs_order(items, votes)


def concordance(x: Mapping[K, int], y: Mapping[K, int]) -> tuple[int, int, int, int]:
    """Over the items both rankings rank: pairs (concordant, discordant, tied in x only, tied in y only)."""
    concordant = discordant = ties_x = ties_y = 0
    for a, b in combinations(sorted(set(x) & set(y)), 2):
        dx, dy = x[a] - x[b], y[a] - y[b]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    return concordant, discordant, ties_x, ties_y


def kendall_tau_b(x: dict[int, int], y: dict[int, int]) -> float | None:
    """Kendall tau-b between two rankings over the items both rank; None when undefined."""
    concordant, discordant, ties_x, ties_y = concordance(x, y)
    denom = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else None


def krippendorff_alpha_ordinal(units: Sequence[Sequence[int]]) -> float | None:
    """Krippendorff's alpha, ordinal metric. `units`: per unit (a completion), the values labelers gave it.

    Units with fewer than two values are not pairable and are ignored. None when undefined (no variation).
    """
    coincidence: defaultdict[tuple[int, int], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidence[(c, k)] += 1.0 / (m - 1)
    if not coincidence:
        return None
    n_c: defaultdict[int, float] = defaultdict(float)
    for (c, _k), w in coincidence.items():
        n_c[c] += w
    values = sorted(n_c)
    n = sum(n_c.values())

    def delta2(c: int, k: int) -> float:
        lo, hi = min(c, k), max(c, k)
        between = sum(n_c[g] for g in values if lo <= g <= hi)
        return (between - (n_c[c] + n_c[k]) / 2) ** 2

    observed = sum(w * delta2(c, k) for (c, k), w in coincidence.items())
    expected = sum(n_c[c] * n_c[k] * delta2(c, k) for c in values for k in values) / (n - 1)
    return None if expected == 0 else 1.0 - observed / expected


@dataclass(frozen=True)
class Agreement:
    alpha: float | None  # Krippendorff's alpha (ordinal) over sets with 2+ rankings
    sets: int  # sets that entered the metric
    per_labeler_tau: dict[str | int, float]  # mean Kendall tau-b with the consensus order
    per_labeler_sets: dict[str | int, int]


def agreement(sets: Sequence[Sequence[RankingView]], settings: PairSettings = PairSettings()) -> Agreement:
    """Agreement over many sets, each given as the rankings it received."""
    units: list[list[int]] = []
    taus: dict[str | int, list[float]] = defaultdict(list)
    used = 0
    for rankings in sets:
        voters = _voters(rankings)
        if len(voters) < 2:
            continue
        used += 1
        per_item: dict[int, list[int]] = defaultdict(list)
        for r in voters:
            for cid, rank in effective_ranks(r, settings.flagged).items():
                per_item[cid].append(rank)
        units.extend(per_item.values())
        merged = consensus_order(voters, settings)
        for r in voters:
            tau = kendall_tau_b(effective_ranks(r, settings.flagged), merged)
            if tau is not None and r.labeler is not None:
                taus[r.labeler].append(tau)
    return Agreement(
        alpha=krippendorff_alpha_ordinal(units),
        sets=used,
        per_labeler_tau={k: sum(v) / len(v) for k, v in taus.items()},
        per_labeler_sets={k: len(v) for k, v in taus.items()},
    )
