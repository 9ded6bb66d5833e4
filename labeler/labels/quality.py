"""Labeler quality for the admin: per labeler, the gold score (labeler/labels/gold.py), the reliability model's accuracy
(labeler/labels/reliability.py, fitted on every label with gold comparisons clamped), agreement with the consensus of
the other labelers (leave-one-out Kendall tau-b), speed (median seconds, share under the fast floor), skip and
flag shares, the same per week (`weekly_trend`), and whether the labeler falls under a floor and should be
reviewed. Nobody is dropped: the list is
for a person to look at.

    with read_session(engine) as session:
        rows = labeler_quality(session=session)
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from labeler.labels.consensus import consensus_order, kendall_tau_b
from labeler.labels.dataset import SetRankings, load_set_rankings
from labeler.labels.gold import GoldScore, fit_with_gold, gold_sets, scores_from
from labeler.labels.stats import LabelerRow, labeler_rows
from labeler.store.tables import Ranking
from labeler.store.users import user_names

RELIABILITY_FLOOR = 0.6  # estimated accuracy under which a labeler is listed for review
GOLD_TAU_FLOOR = 0.2  # mean tau with gold sets under which a labeler is listed for review


@dataclass(frozen=True)
class LabelerQuality:
    row: LabelerRow
    gold: GoldScore | None
    reliability: float | None  # estimated P(a vote matches the true order)
    votes: int
    loo_tau: float | None  # mean tau-b with the consensus of the other labelers of the same sets
    loo_sets: int

    @property
    def concerns(self) -> list[str]:
        out = []
        if self.reliability is not None and self.votes >= 10 and self.reliability < RELIABILITY_FLOOR:
            out.append(f"reliability {self.reliability:.2f} < {RELIABILITY_FLOOR}")
        if self.gold is not None and self.gold.mean_tau is not None and self.gold.mean_tau < GOLD_TAU_FLOOR:
            out.append(f"gold tau {self.gold.mean_tau:.2f} < {GOLD_TAU_FLOOR}")
        return out


def leave_one_out_by_set(sets: Sequence[SetRankings]) -> dict[tuple[str | int, int], float]:
    """(labeler, set id) -> tau-b between their ranking and the merged ranking of the set's other labelers."""
    out: dict[tuple[str | int, int], float] = {}
    for s in sets:
        voters = [r for r in s.rankings if r.labeler is not None and not (r.skipped or r.none_acceptable)]
        if len(voters) < 2:
            continue
        for r in voters:
            others = consensus_order([o for o in voters if o is not r])
            tau = kendall_tau_b(dict(r.ranks), others)
            if tau is not None and r.labeler is not None:  # (always: voters have one; for the type checker)
                out[(r.labeler, s.set_id)] = tau
    return out


def leave_one_out_tau(sets: Sequence[SetRankings]) -> dict[str | int, list[float]]:
    """Per labeler, tau-b between their ranking and the merged ranking of the set's other labelers."""
    out: dict[str | int, list[float]] = defaultdict(list)
    for (labeler, _), tau in leave_one_out_by_set(sets).items():
        out[labeler].append(tau)
    return out


@dataclass(frozen=True)
class OwnAgreement:
    mean_tau: float | None  # None until another labeler has ranked one of this labeler's sets
    sets: int


def own_agreement(*, session: Session, user_id: int, recent: int = 200) -> OwnAgreement:
    """What a labeler's own page shows: their mean tau-b with the consensus of the other labelers of the same
    sets, over their `recent` newest rankings (gold sets, skips and "none acceptable" left out)."""
    mine = session.exec(
        select(Ranking.set_id)
        .where(
            Ranking.user_id == user_id,
            col(Ranking.skipped).is_(False),
            col(Ranking.none_acceptable).is_(False),
        )
        .order_by(col(Ranking.created_at).desc())
        .limit(recent)
    ).all()
    shared = session.exec(
        select(Ranking.set_id)
        .where(col(Ranking.set_id).in_(mine), Ranking.user_id != user_id, col(Ranking.skipped).is_(False))
        .distinct()
    ).all()
    if not shared:
        return OwnAgreement(None, 0)
    sets = [s for s in load_set_rankings(session=session, set_ids=list(shared)) if s.origin != "gold"]
    taus = [tau for (labeler, _), tau in leave_one_out_by_set(sets).items() if labeler == user_id]
    return OwnAgreement(statistics.fmean(taus) if taus else None, len(taus))


@dataclass(frozen=True)
class WeekRow:
    """One labeler's work in one ISO week (weeks of the ranking's submission, UTC)."""

    week: str  # e.g. 2026-W49
    labeler: str
    rankings: int  # skips included
    median_seconds: float | None
    skip_share: float
    flag_share: float
    loo_tau: float | None  # mean tau-b with the other labelers of the same sets, over that week's rankings
    loo_sets: int


def weekly_trend(*, session: Session, sets: Sequence[SetRankings], weeks: int = 8) -> list[WeekRow]:
    """Per labeler and week, the newest `weeks` weeks, newest first: how much, how fast, how they agree."""
    loo = leave_one_out_by_set([s for s in sets if s.origin != "gold"])
    names = user_names(session=session)
    cells: dict[tuple[str, int], list[tuple[float | None, bool, bool, float | None]]] = defaultdict(list)
    query = select_columns(  # more columns than sqlmodel's typed select takes
        col(Ranking.user_id),
        col(Ranking.set_id),
        col(Ranking.created_at),
        col(Ranking.seconds_spent),
        col(Ranking.skipped),
        col(Ranking.flags),
    )
    for user_id, set_id, created, seconds, skipped, flags in session.execute(query):
        if user_id is None:
            continue
        year, week, _ = created.isocalendar()
        cells[(f"{year}-W{week:02d}", user_id)].append(
            (seconds, skipped, bool(flags), loo.get((user_id, set_id)))
        )
    newest = sorted({week for week, _ in cells}, reverse=True)[:weeks]
    out = []
    for (week, user_id), items in sorted(cells.items(), key=lambda kv: (kv[0][0], names.get(kv[0][1], ""))):
        if week not in newest:
            continue
        times = [t for t, *_ in items if t is not None]
        taus = [tau for *_, tau in items if tau is not None]
        out.append(
            WeekRow(
                week=week,
                labeler=names.get(user_id, str(user_id)),
                rankings=len(items),
                median_seconds=round(statistics.median(times), 1) if times else None,
                skip_share=round(sum(skip for _, skip, _, _ in items) / len(items), 3),
                flag_share=round(sum(flag for _, _, flag, _ in items) / len(items), 3),
                loo_tau=round(statistics.fmean(taus), 3) if taus else None,
                loo_sets=len(taus),
            )
        )
    return sorted(out, key=lambda r: r.week, reverse=True)


def labeler_quality(*, session: Session, sets: Sequence[SetRankings] | None = None) -> list[LabelerQuality]:
    """One row per account, in `labeler_rows` order (by name). `sets`: every ranked set, when the caller has
    loaded them already (the dashboard), else read here."""
    sets = load_set_rankings(session=session) if sets is None else sets
    gold = scores_from(sets, gold_sets(session=session))
    fit = fit_with_gold(session=session, sets=sets)
    loo = leave_one_out_tau([s for s in sets if s.origin != "gold"])
    rows = []
    for row in labeler_rows(session=session):
        taus = loo.get(row.user_id, [])
        rows.append(
            LabelerQuality(
                row,
                gold.get(row.user_id),
                fit.accuracy.get(row.user_id),
                fit.votes.get(row.user_id, 0),
                statistics.fmean(taus) if taus else None,
                len(taus),
            )
        )
    return rows
