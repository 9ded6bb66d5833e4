"""What a training round reads and what it records: the rankings it learns from, the prompts it trains and
samples on, and its lineage row (rankings and sets used, reward model, parent and new policy).

    with Session(engine) as session:
        labels = round_labels(session=session)
        ...
        finish_round(session=session, lineage=RoundLineage(...), new=version_row, gate=verdict.as_dict())
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from sqlmodel import Session, col, select

from labeler.records.policies import PolicyRef, current_policy, mark_current, policy_by_version
from labeler.records.reward_models import RewardRef, find_reward_model
from labeler.records.webhooks import queue_event
from labeler.store.tables import PolicyVersion, Prompt, Ranking, TrainingRound, id_of

Optimizer = Literal["ppo", "dpo"]


@dataclass(frozen=True)
class RoundLabels:
    """The non-skip rankings in the store when a round starts, and the sets they belong to."""

    ranking_ids: list[int]
    set_ids: list[int]


@dataclass(frozen=True)
class StagePrompts:
    train: list[list[dict]]
    samples: list[list[dict]]  # fixed eval prompts answered before and after the round
    train_instructions: list[list[dict]] = field(default_factory=list)  # each train prompt's ([] for none)
    sample_instructions: list[list[dict]] = field(default_factory=list)  # each sample prompt's ([] for none)


@dataclass(frozen=True)
class RoundLineage:
    optimizer: Optimizer
    parent_version_id: int
    new_version_id: int
    labels: RoundLabels
    reward_model_id: int | None = None
    job_id: int | None = None
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy optimiser (PPO, DPO) starts from, read in one short transaction and detached from it."""

    parent: PolicyRef
    reward: RewardRef | None
    prompts: StagePrompts
    parent_kl_coef: float | None = None  # where the parent's PPO round left its adaptive KL coefficient


def policy_inputs(
    *,
    session: Session,
    sample_count: int,
    need_reward: bool,
    reward_model: str | None = None,
    parent_version: int | None = None,
) -> PolicyInputs:
    """The current version (or `parent_version`: a round's SFT stage, which the optimiser goes on from) as the
    parent, the reward model (`reward_model` by name, else the newest), train prompts and `sample_count` eval
    prompts. Raises ValueError naming what is missing and how to add it."""
    if parent_version is not None:
        parent = policy_by_version(session=session, version=parent_version)
        if parent is None:
            raise ValueError(f"no version v{parent_version} in the store to start from")
    else:
        parent = current_policy(session=session)
    if parent is None:
        raise ValueError(
            "no current policy version in the store: start the app once or run `rankloop generate`"
        )
    reward = find_reward_model(session=session, name=reward_model)
    if need_reward and reward is None:
        raise ValueError(f"reward model {reward_model or '(newest)'} not found: run `rankloop reward` first")
    coef = (parent.metrics.get("final") or {}).get("kl_coef")
    return PolicyInputs(
        PolicyRef.of(parent),
        reward,
        stage_prompts(session=session, sample_count=sample_count),
        float(coef) if isinstance(coef, int | float) else None,
    )


def round_labels(*, session: Session) -> RoundLabels:
    used = session.exec(select(col(Ranking.id), Ranking.set_id).where(col(Ranking.skipped).is_(False))).all()
    return RoundLabels(
        ranking_ids=[r for r, _ in used if r is not None], set_ids=sorted({s for _, s in used})
    )


def stage_prompts(*, session: Session, sample_count: int) -> StagePrompts:
    """Train-split prompts to train on, and the first `sample_count` eval-split ones (train ones when the store
    has no eval split) for before/after samples. Raises ValueError when there is nothing to train on."""
    prompts = session.exec(
        select(Prompt.messages, Prompt.split, Prompt.instructions).order_by(col(Prompt.id))
    ).all()
    train = [list(m) for m, split, _ in prompts if split == "train"]
    rules = [list(r or []) for _, split, r in prompts if split == "train"]
    evals = [(list(m), list(r or [])) for m, split, r in prompts if split == "eval"]
    evals = (evals or list(zip(train, rules, strict=True)))[:sample_count]
    if not train:
        raise ValueError(
            "no train-split prompts in the store: import some with `rankloop import prompts FILE`"
        )
    return StagePrompts(train, [m for m, _ in evals], rules, [r for _, r in evals])


def finish_round(*, session: Session, lineage: RoundLineage, new: PolicyVersion, gate: dict) -> int:
    """In one transaction: the round's lineage row, the gate's verdict (rlhf/train/gate.py) on it and on the new version,
    and the switch to the new version where the verdict says `switched`; returns the round's id."""
    new.metrics = {**new.metrics, "gate": gate}
    new.gate_decision = gate.get("decision")
    session.add(new)
    if gate.get("switched"):
        mark_current(session=session, target=new)
    elif gate.get("decision") != "pass":
        refused = {"version": new.version, "decision": gate.get("decision"), "lines": gate.get("lines", [])}
        queue_event(session=session, event="version.refused", payload=refused)
    return record_round(session=session, lineage=replace(lineage, metrics={**lineage.metrics, "gate": gate}))


def record_round(*, session: Session, lineage: RoundLineage) -> int:
    """Write the round's lineage row (committing whatever the session holds); returns its id."""
    row = TrainingRound(
        job_id=lineage.job_id,
        optimizer=lineage.optimizer,
        parent_version_id=lineage.parent_version_id,
        reward_model_id=lineage.reward_model_id,
        new_version_id=lineage.new_version_id,
        ranking_ids=lineage.labels.ranking_ids,
        set_ids=lineage.labels.set_ids,
        metrics=lineage.metrics,
    )
    session.add(row)
    session.commit()
    return id_of(row)
