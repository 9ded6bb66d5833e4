"""Reward-model rows: the name the next one gets, registering one a training stage saved, finding one by name.

with Session(engine) as session:
    ref = register_reward_model(session=session, name=next_reward_name(session=session), ...)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from labeler.store.tables import RewardModel, id_of


@dataclass(frozen=True)
class RewardFacts:
    """What the reward stage records about a model for the floors above (the gate, selection, costs, the
    training tab), stored as the model's columns; its metric series stay in `metrics`."""

    accuracy: float | None = None  # held-out pairwise accuracy; None when no set was held out
    heldout_pairs: int = 0
    heldout_sets: int = 0
    heads: int = 1  # score heads (their disagreement is one selection measure)
    ensemble: int = 1  # models trained on resamples of the sets
    information: bool = False  # its head's precision was saved (rlhf/train/information.py)
    continued_from: str | None = None  # the model it continued training, if any

    @classmethod
    def of(cls, row: RewardModel) -> RewardFacts:
        return cls(
            row.accuracy,
            row.heldout_pairs,
            row.heldout_sets,
            row.heads,
            row.ensemble,
            row.information,
            row.continued_from,
        )


@dataclass(frozen=True)
class RewardFigures:
    """The figures a reward model's evaluation recorded in `metrics`, for the training tab: mean margin, loss and
    pairs on the sets it was evaluated on, accuracy by the labelers' agreement, and the reward-hacking review
    (labeler/labels/hacking.py: how many suspects, and each one)."""

    mean_margin: float | None = None
    loss: float | None = None
    pairs: int | None = None
    accuracy_by_agreement: dict[str, float] = field(default_factory=dict)
    suspects: int | None = None
    review: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, row: RewardModel) -> RewardFigures:
        m, review = row.metrics, row.metrics.get("review") or {}
        return cls(
            _number(m.get("mean_margin")),
            _number(m.get("loss")),
            m.get("pairs") if isinstance(m.get("pairs"), int) else None,
            dict(m.get("accuracy_by_agreement") or {}),
            review.get("suspects"),
            list(review.get("items", [])),
        )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class RewardRef:
    """What a stage needs of a reward model, detached from any session."""

    id: int
    name: str
    base_model: str
    adapter_path: str | None
    facts: RewardFacts = RewardFacts()

    @classmethod
    def of(cls, row: RewardModel) -> RewardRef:
        return cls(id_of(row), row.name, row.base_model, row.adapter_path, RewardFacts.of(row))


def next_reward_name(*, session: Session) -> str:
    """`r<N+1>` for a store holding N reward models."""
    return f"r{(session.exec(select(func.count(col(RewardModel.id)))).one() or 0) + 1}"


def find_reward_model(*, session: Session, name: str | None = None) -> RewardRef | None:
    """The reward model called `name`; the newest one when `name` is None or empty."""
    if name:
        row = session.exec(select(RewardModel).where(RewardModel.name == name)).first()
    else:
        row = newest_reward_model(session=session)
    return RewardRef.of(row) if row is not None else None


def newest_reward_model(*, session: Session) -> RewardModel | None:
    """The most recently registered reward model's row (metrics included), or None."""
    return session.exec(select(RewardModel).order_by(col(RewardModel.id).desc())).first()


def reward_models(*, session: Session, newest_first: bool = True) -> list[RewardModel]:
    """Every reward model with its held-out metrics (the training tab's table and trend plot)."""
    order = col(RewardModel.id).desc() if newest_first else col(RewardModel.id)
    return list(session.exec(select(RewardModel).order_by(order)).all())


def reward_names(*, session: Session) -> dict[int, str]:
    return {
        i: name for i, name in session.exec(select(RewardModel.id, RewardModel.name)).all() if i is not None
    }


def register_reward_model(
    *,
    session: Session,
    name: str,
    base_model: str,
    adapter_path: str,
    snapshot_path: str | None,
    facts: RewardFacts,
    metrics: dict,
    job_id: int | None,
) -> RewardRef:
    """Record a reward model whose files are already saved: its `facts` as columns, its figures and series as
    `metrics` (names are unique: a second one fails whole)."""
    row = RewardModel(
        name=name,
        base_model=base_model,
        adapter_path=adapter_path,
        job_id=job_id,
        snapshot_path=snapshot_path,
        metrics=metrics,
        **asdict(facts),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return RewardRef.of(row)


# bench/active_labeling.py (README): one head's doubt never matched random selection
ONE_HEAD_NOTE = (
    "it has one score head and no saved precision, so selection reads its doubt, which cannot tell answers that "
    "are alike from answers it has not learned to tell apart (bench/active_labeling.py: doubt never matched "
    "random selection). Train the next reward model with information on (the default: `rankloop reward` "
    "without --no_information) or with heads 4 (`--heads 4`, the round form's reward_heads)"
)


INFORMATION_NOTE = (
    "selection keeps the sets a label would teach it most: answers that differ where its score head has seen "
    "few labels (rlhf/select/design.py), each kept set counted as known before the next is chosen"
)


def selection_measure(*, session: Session) -> str:
    """What uncertainty selection reads from the newest reward model, in words (the worker's rule,
    rlhf/serve/pregen.py): the information a label adds (models that saved their precision), else its ensemble's or
    its score heads' disagreement, or one head's doubt with a note."""
    row = newest_reward_model(session=session)
    if row is None:
        return "There is no reward model yet: every set is kept until one is trained."
    heads, models = row.heads, row.ensemble
    if row.information:
        return f"Reward model {row.name}: {INFORMATION_NOTE}."
    if models > 1:
        return f"Reward model {row.name}: selection reads where its {models} models disagree."
    if heads > 1:
        return f"Reward model {row.name}: selection reads where its {heads} score heads disagree."
    return f"Reward model {row.name}: {ONE_HEAD_NOTE}."
