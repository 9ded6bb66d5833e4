"""What a judge's rankings are worth in human ones. On the sets a judge ranked, the reliability model (one-coin
Dawid-Skene over pairwise votes, gold orders clamped: labeler/labels/reliability.py) estimates the judge's accuracy
and the people's. A vote right with probability a tells the true order apart with strength (2a - 1)^2 (its
squared correlation with the truth: what a vote adds to a logistic fit of the order), so one judge ranking stands
for (2a_judge - 1)^2 / (2a_people - 1)^2 human rankings, and none below chance. The dashboard's "human rankings
saved" is that estimate; bench/loop.py --judge measures the real thing (the gain with a judge and fewer human
labels against all human labels).

    with Session(engine) as s:
        worth = judge_worth(session=s)     # {judge's user id: JudgeWorth(accuracy, rankings, saved)}
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from labeler.labels.dataset import load_set_rankings
from labeler.labels.gold import fit_with_gold
from labeler.labels.judges import judge_ids
from labeler.store.tables import Ranking


@dataclass(frozen=True)
class JudgeWorth:
    accuracy: float  # the judge's, estimated on the sets it ranked
    people_accuracy: float  # the people's on those sets, weighted by their votes
    rankings: int  # the judge's rankings (abstentions not counted)

    @property
    def saved(self) -> float:
        """Human rankings its rankings stand for."""
        if self.people_accuracy <= 0.5:
            return 0.0
        return self.rankings * strength(self.accuracy) / strength(self.people_accuracy)


def strength(accuracy: float) -> float:
    """(2a - 1)^2 above chance, 0 at or below it (a judge is never read reversed)."""
    return max(0.0, 2 * accuracy - 1) ** 2


def judge_worth(*, session: Session) -> dict[int, JudgeWorth]:
    """Each judge's estimated accuracy and worth in human rankings, over the sets judges and people both ranked;
    judges with no such set are left out."""
    judges = judge_ids(session=session)
    if not judges:
        return {}
    judged = select(Ranking.set_id).where(col(Ranking.user_id).in_(judges))
    ranked = session.exec(  # the rankings of the sets a judge ranked: the rest say nothing of a judge
        select(Ranking.set_id, Ranking.user_id).where(
            col(Ranking.skipped).is_(False), col(Ranking.set_id).in_(judged)
        )
    ).all()
    by_set: dict[int, set[int]] = {}
    for set_id, user_id in ranked:
        if user_id is not None:
            by_set.setdefault(set_id, set()).add(user_id)
    shared = [s for s, users in by_set.items() if users & judges and users - judges]
    if not shared:
        return {}
    fit = fit_with_gold(session=session, sets=load_set_rankings(session=session, set_ids=shared))
    people = {k: n for k, n in fit.votes.items() if k not in judges}
    total = sum(people.values())
    if not total:
        return {}
    people_accuracy = sum(fit.accuracy[k] * n for k, n in people.items()) / total
    rankings = {j: sum(1 for users in by_set.values() if j in users) for j in judges}
    return {j: JudgeWorth(fit.accuracy[j], people_accuracy, rankings[j]) for j in judges if j in fit.accuracy}
