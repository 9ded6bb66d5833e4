"""Counts for dashboards: store totals, per-labeler progress and speed, flagged completions."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from statistics import median

from sqlalchemy import case, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from labeler.store.leasing import had_by
from labeler.store.tables import (
    Completion,
    CompletionSet,
    PolicyVersion,
    Ranking,
    RewardModel,
    User,
    id_of,
    utcnow,
)


@dataclass(frozen=True)
class LabelerProgress:
    today: int
    total: int
    waiting: int  # sets this labeler could still be given
    median_seconds_today: float | None = None  # server-measured time per set ranked today (skips left out)


def waiting_for(*, session: Session, user_id: int) -> int:
    """Generated sets with labels still needed that this labeler has not had."""
    query = select(func.count(col(CompletionSet.id))).where(
        CompletionSet.origin == "generated",
        CompletionSet.labels_done < CompletionSet.labels_needed,
        ~had_by(user_id),
    )
    return session.exec(query).one()


def labeler_progress(*, session: Session, user_id: int, waiting: int | None = None) -> LabelerProgress:
    """Rankings today and in all, and sets waiting (counted here unless the caller passes a recent count)."""
    start_of_day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    today = func.count(col(Ranking.id)).filter(col(Ranking.created_at) >= start_of_day)
    counts = session.exec(select(today, func.count(col(Ranking.id))).where(Ranking.user_id == user_id)).one()
    seconds = session.exec(
        select(Ranking.seconds_spent).where(
            Ranking.user_id == user_id,
            col(Ranking.created_at) >= start_of_day,
            col(Ranking.skipped).is_(False),
            col(Ranking.seconds_spent).is_not(None),
        )
    ).all()
    return LabelerProgress(
        today=counts[0],
        total=counts[1],
        waiting=waiting if waiting is not None else waiting_for(session=session, user_id=user_id),
        median_seconds_today=median(x for x in seconds if x is not None) if seconds else None,
    )


@dataclass(frozen=True)
class StoreCounts:
    sets: int
    generated_sets: int
    imported_sets: int
    rankings: int
    skipped: int
    none_acceptable: int
    flagged_completions: int
    rankings_last_hour: int


def store_counts(*, session: Session) -> StoreCounts:
    origin = dict(
        session.exec(
            select(CompletionSet.origin, func.count(col(CompletionSet.id))).group_by(
                col(CompletionSet.origin)
            )
        ).all()
    )
    human = select(func.count(col(Ranking.id))).where(col(Ranking.user_id).is_not(None))
    flags = session.exec(select(Ranking.flags).where(col(Ranking.user_id).is_not(None))).all()
    return StoreCounts(
        sets=sum(origin.values()),
        generated_sets=origin.get("generated", 0),
        imported_sets=origin.get("imported", 0),
        rankings=session.exec(human).one(),
        skipped=session.exec(human.where(col(Ranking.skipped).is_(True))).one(),
        none_acceptable=session.exec(human.where(col(Ranking.none_acceptable).is_(True))).one(),
        flagged_completions=sum(len(f) for f in flags),
        rankings_last_hour=session.exec(
            human.where(Ranking.created_at >= utcnow() - timedelta(hours=1))
        ).one(),
    )


@dataclass(frozen=True)
class TrainingData:
    """What a training job would read now: sets with a ranking (skips left out), those ranked since the
    newest reward model (what a continued reward model trains on), and those the current version wrote (what
    DPO with `data=parent` trains on)."""

    ranked_sets: int
    new_sets: int
    current_sets: int = 0


def training_data(*, session: Session) -> TrainingData:
    ranked = select(func.count(func.distinct(col(Ranking.set_id)))).where(col(Ranking.skipped).is_(False))
    newest = session.exec(select(func.max(col(RewardModel.created_at)))).one()
    new = ranked if newest is None else ranked.where(col(Ranking.created_at) > newest)
    current = (
        select(PolicyVersion.id).where(col(PolicyVersion.is_current).is_(True)).limit(1).scalar_subquery()
    )
    by_current = ranked.join(CompletionSet, col(CompletionSet.id) == col(Ranking.set_id)).where(
        col(CompletionSet.policy_version_id) == current
    )
    return TrainingData(
        ranked_sets=session.exec(ranked).one(),
        new_sets=session.exec(new).one(),
        current_sets=session.exec(by_current).one(),
    )


FAST_SECONDS = 5.0  # a set of answers ranked faster than this was hardly read


@dataclass(frozen=True)
class LabelerRow:
    user_id: int
    name: str
    role: str
    disabled: bool
    rankings: int
    skipped: int
    median_seconds: float | None
    fast_share: float | None = None  # share of rankings done in under FAST_SECONDS (server-measured)
    flag_share: float | None = None  # share of rankings that flag an answer


@dataclass(frozen=True)
class AccountRow:
    name: str
    role: str
    disabled: bool
    rankings: int  # skips left out


def account_rows(*, session: Session) -> list[AccountRow]:
    """Every account by name with its rankings, counted by the database: the Users tab at any store size."""
    query = (
        select(Ranking.user_id, func.count(col(Ranking.id)))
        .where(col(Ranking.skipped).is_(False), col(Ranking.user_id).is_not(None))
        .group_by(col(Ranking.user_id))
    )
    counts = {user_id: n for user_id, n in session.exec(query)}
    return [
        AccountRow(u.name, u.role, u.disabled, counts.get(u.id, 0))
        for u in session.exec(select(User).order_by(col(User.name)))
    ]


def labeler_rows(*, session: Session, fast_seconds: float = FAST_SECONDS) -> list[LabelerRow]:
    per_user: dict[int, list[tuple[bool, float | None, bool]]] = defaultdict(list)
    for user_id, skipped, seconds, flags in session.exec(
        select(Ranking.user_id, Ranking.skipped, Ranking.seconds_spent, Ranking.flags)
    ):
        if user_id is not None:
            per_user[user_id].append((skipped, seconds, bool(flags)))
    rows = []
    for user in session.exec(select(User).order_by(User.name)):
        entries = per_user.get(id_of(user), [])
        done = [(s, f) for skipped, s, f in entries if not skipped]
        times = [s for s, _ in done if s is not None]
        rows.append(
            LabelerRow(
                user_id=id_of(user),
                name=user.name,
                role=user.role,
                disabled=user.disabled,
                rankings=len(done),
                skipped=len(entries) - len(done),
                median_seconds=round(median(times), 1) if times else None,
                fast_share=round(sum(t < fast_seconds for t in times) / len(times), 3) if times else None,
                flag_share=round(sum(f for _, f in done) / len(done), 3) if done else None,
            )
        )
    return rows


@dataclass(frozen=True)
class HumanTime:
    """Labelers' time on some sets, from the server-measured seconds per ranking (lease to submit; skips too)."""

    timed: int  # rankings with a measured time (imported ones have none)
    minutes: float
    median_seconds: float | None

    def card(self) -> dict[str, object]:
        """The lines an export's dataset card shows."""
        median_text = "n/a" if self.median_seconds is None else f"{self.median_seconds:.1f}"
        return {
            "human minutes (server-measured, lease to submit)": f"{self.minutes:.1f} over {self.timed} timed rankings",
            "median seconds per ranking": median_text,
        }


def human_time(*, session: Session, set_ids: list[int] | None = None) -> HumanTime:
    """Labelers' time on the given sets (all sets when None)."""
    query = select(Ranking.set_id, Ranking.seconds_spent)
    wanted = None if set_ids is None else set(set_ids)
    times = [
        sec for set_id, sec in session.exec(query) if sec is not None and (wanted is None or set_id in wanted)
    ]
    return HumanTime(
        timed=len(times),
        minutes=round(sum(times) / 60, 2),
        median_seconds=round(median(times), 1) if times else None,
    )


@dataclass(frozen=True)
class ChosenSets:
    """Sets of one policy version chosen one way (CompletionSet.selection's "by"; older sets have none) by one
    measure ("information", "disagreement", "doubt"; "" where no model scored them)."""

    version: int
    by: str
    measure: str
    sets: int
    labeled: int  # with all their labels
    mean_score: float | None  # in the measure's units (information: bits; disagreement: bits; doubt: 0..1)


def chosen_sets(*, session: Session, versions: int = 5) -> list[ChosenSets]:
    """How the generated sets of the newest `versions` policy versions were chosen, newest version first (counted
    and averaged by the database: the same time at any store size)."""
    recent = session.exec(
        select(PolicyVersion.id, PolicyVersion.version)
        .order_by(col(PolicyVersion.version).desc())
        .limit(versions)
    ).all()
    numbers = {vid: number for vid, number in recent}
    selection = CompletionSet.__table__.c.selection  # type: ignore[attr-defined]  # the JSON column
    by, measure = selection["by"].as_string(), selection["measure"].as_string()
    full = case((col(CompletionSet.labels_done) >= col(CompletionSet.labels_needed), 1), else_=0)
    query = (
        select_columns(
            col(CompletionSet.policy_version_id),
            by,
            measure,
            func.count(),
            func.sum(full),
            func.avg(selection["score"].as_float()),
        )
        .where(
            col(CompletionSet.origin) == "generated", col(CompletionSet.policy_version_id).in_(list(numbers))
        )
        .group_by(col(CompletionSet.policy_version_id), by, measure)
    )
    rows = [
        ChosenSets(
            numbers[vid],
            chosen_by or "(before selection)",
            chosen_measure or "",
            sets,
            int(labeled or 0),
            None if mean is None else round(float(mean), 3),
        )
        for vid, chosen_by, chosen_measure, sets, labeled, mean in session.execute(query)
    ]
    return sorted(rows, key=lambda r: (-r.version, r.by, r.measure))


@dataclass(frozen=True)
class FlaggedRow:
    set_id: int
    completion_id: int
    reason: str
    labeler: str
    text: str
    comment: str = ""  # the labeler's comment on the set


def flagged_completions(*, session: Session, limit: int = 200) -> tuple[list[FlaggedRow], Counter[str]]:
    """The most recent flags with their reasons, and a count per reason."""
    names = dict(session.exec(select(User.id, User.name)).all())
    rows: list[FlaggedRow] = []
    reasons: Counter[str] = Counter()
    query = select(Ranking.set_id, Ranking.user_id, Ranking.flags, Ranking.comment).where(
        col(Ranking.user_id).is_not(None)
    )
    for set_id, user_id, flags, comment in session.exec(query.order_by(col(Ranking.id).desc())):
        for cid, reason in flags.items():
            reasons[reason] += 1
            if len(rows) < limit:
                rows.append(FlaggedRow(set_id, int(cid), reason, names.get(user_id, "?"), "", comment or ""))
    texts = dict(
        session.exec(
            select(Completion.id, Completion.text).where(
                col(Completion.id).in_([r.completion_id for r in rows])
            )
        ).all()
    )
    return [
        FlaggedRow(r.set_id, r.completion_id, r.reason, r.labeler, texts.get(r.completion_id, ""), r.comment)
        for r in rows
    ], reasons


def generated_sets(*, session: Session) -> int:
    """Every set the generator has written (the background monitor's count of the generator's work)."""
    query = select(func.count(col(CompletionSet.id))).where(CompletionSet.origin == "generated")
    return session.exec(query).one()
