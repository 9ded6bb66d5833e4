"""What each training round's labels cost and bought: the rankings new since the previous round, the human
minutes they took (server-measured, lease to submit), the reward model's held-out accuracy (a DPO round's: its
implicit reward's on held-out prompts) and its gain over the previous round's, the human win-rate of the new
version over its parent (from human-evaluation sets), and labels per point of accuracy and of win-rate. Read by
the admin dashboard.

    with read_session(engine) as session:
        for row in round_costs(session=session): print(row.version, row.new_labels, row.human_minutes)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from labeler.labels.winrate import human_win_rate
from labeler.store.tables import PolicyVersion, Ranking, RewardModel, TrainingRound


@dataclass(frozen=True)
class RoundCost:
    round_id: int
    version: int | None  # the version the round made
    new_labels: int  # rankings the round used that the previous round had not
    human_minutes: float
    reward_model: str | None
    reward_accuracy: float | None
    accuracy_gain: float | None  # over the previous round's reward model, in points
    win_rate: float | None  # humans' win-rate of the new version over its parent
    win_rate_interval: tuple[float, float] | None
    comparisons: int
    # the new version's KL from v0 as its round measured it (its `kl` column)
    kl: float | None = None

    @property
    def labels_per_accuracy_point(self) -> float | None:
        return _per_point(self.new_labels, self.accuracy_gain)

    @property
    def labels_per_win_point(self) -> float | None:
        gain = None if self.win_rate is None else (self.win_rate - 0.5) * 100
        return _per_point(self.new_labels, gain)


def _per_point(labels: int, points: float | None) -> float | None:
    return None if points is None or points <= 0 else round(labels / points, 2)


def round_costs(*, session: Session) -> list[RoundCost]:
    """One row per recorded round, oldest first."""
    rounds = session.exec(select(TrainingRound).order_by(col(TrainingRound.id))).all()
    if not rounds:
        return []
    seconds = dict(session.exec(select(Ranking.id, Ranking.seconds_spent)).all())
    versions = {v.id: v for v in session.exec(select(PolicyVersion))}
    models = {m.id: m for m in session.exec(select(RewardModel))}
    out: list[RoundCost] = []
    before: set[int] = set()
    last_accuracy: float | None = None
    for r in rounds:
        new = [i for i in r.ranking_ids if i not in before]
        before |= set(r.ranking_ids)
        model = models.get(r.reward_model_id)
        made = versions.get(r.new_version_id)
        accuracy = _accuracy(model) if model else _dpo_accuracy(made)
        gain = (
            None if accuracy is None or last_accuracy is None else round((accuracy - last_accuracy) * 100, 2)
        )
        last_accuracy = accuracy if accuracy is not None else last_accuracy
        wins = None
        if r.new_version_id is not None and r.parent_version_id is not None:
            wins = human_win_rate(
                session=session, new_version_id=r.new_version_id, old_version_id=r.parent_version_id
            )
        rate = wins.rate if wins else None
        out.append(
            RoundCost(
                round_id=r.id or 0,
                version=made.version if made else None,
                new_labels=len(new),
                human_minutes=round(sum(seconds.get(i) or 0.0 for i in new) / 60, 1),
                reward_model=model.name if model else None,
                reward_accuracy=accuracy,
                accuracy_gain=gain,
                win_rate=rate,
                win_rate_interval=(wins.low, wins.high)
                if wins and wins.low is not None and wins.high is not None
                else None,
                comparisons=wins.comparisons if wins else 0,
                kl=made.kl if made else None,
            )
        )
    return out


def _dpo_accuracy(version: PolicyVersion | None) -> float | None:
    """A DPO version's implicit reward's held-out accuracy (None without held-out sets)."""
    return version.heldout_accuracy if version else None


def _accuracy(model: RewardModel | None) -> float | None:
    """The model's held-out accuracy (None when it had no held-out sets: its training accuracy is no measure)."""
    return model.accuracy if model else None
