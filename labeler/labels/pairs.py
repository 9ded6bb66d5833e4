"""Rankings to pairwise comparisons: pure functions on plain data.

A ranking of N completions gives every unordered pair with different ranks as (chosen, rejected, margin =
rank difference). Ties give no pair unless `keep_ties` (margin 0). Flagged completions are dropped, or with
`flagged="reject"` each flagged one loses against every unflagged one (as if ranked just below the worst).
"None acceptable" and skipped rankings give no pairs, except that an answer its labeler wrote (an edit, labeler/store)
ranks above the answers in a "none acceptable" ranking, so such a ranking votes for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Literal

FlagMode = Literal["drop", "reject"]


@dataclass(frozen=True)
class PairSettings:
    """How rankings become pairs; stored with every export and every reward model."""

    keep_ties: bool = field(default=False, metadata={"help": "tied completions give a pair with margin 0"})
    flagged: FlagMode = field(
        default="drop",
        metadata={"help": "drop flagged completions, or make each one 'rejected' vs every unflagged one"},
    )
    min_agreement: float = field(
        default=0.0,
        metadata={"help": "drop consensus pairs whose winning share of votes is below this (0-1)"},
    )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RankingView:
    """One labeler's ranking of one set: ranks (completion id -> rank) and flagged ids."""

    ranks: dict[int, int]
    flagged: frozenset[int] = frozenset()
    none_acceptable: bool = False
    skipped: bool = False
    labeler: str | int | None = None


@dataclass(frozen=True)
class IdPair:
    """A comparison by completion ids. For ties (margin 0) the order of the two ids carries no meaning."""

    chosen: int
    rejected: int
    margin: float


def casts_votes(ranking: RankingView) -> bool:
    """Whether a ranking orders any answers: not a skip, and not "none acceptable" unless its labeler wrote a
    better answer (then the only ranks it holds are that answer's over the others)."""
    return not ranking.skipped and bool(ranking.ranks)


def effective_ranks(ranking: RankingView, mode: FlagMode) -> dict[int, int]:
    """Ranks used for pairing: flagged ones are left out, or (mode `reject`) placed one below the worst rank."""
    if mode == "drop" or not ranking.flagged:
        return dict(ranking.ranks)
    below_worst = max(ranking.ranks.values(), default=0) + 1
    return {**ranking.ranks, **{cid: below_worst for cid in ranking.flagged}}


def ranking_to_pairs(ranking: RankingView, settings: PairSettings = PairSettings()) -> list[IdPair]:
    """All pairs one ranking implies, by completion id (N choose 2 for a strict N-way ranking)."""
    if not casts_votes(ranking):
        return []
    ranks = effective_ranks(ranking, settings.flagged)
    pairs = []
    for a, b in combinations(sorted(ranks), 2):
        ra, rb = ranks[a], ranks[b]
        if ra == rb:
            if not settings.keep_ties:
                continue
            if settings.flagged == "reject" and a in ranking.flagged and b in ranking.flagged:
                continue  # two flagged answers tell nothing about each other
            pairs.append(IdPair(a, b, 0.0))
        elif ra < rb:
            pairs.append(IdPair(a, b, float(rb - ra)))
        else:
            pairs.append(IdPair(b, a, float(ra - rb)))
    return pairs
