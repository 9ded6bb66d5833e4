"""Policy-version rows: the initial version, the current one, and switching.

pv = ensure_initial_policy(session=session, base_model="default")
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from labeler.records.webhooks import queue_event
from labeler.store.tables import Assignment, CompletionSet, PolicyVersion, Prompt, utcnow


@dataclass(frozen=True)
class PolicyRef:
    """What generation needs to know of a version, detached from any session (safe to use after it closes)."""

    id: int
    version: int
    base_model: str
    adapter_path: str | None
    parent_id: int | None

    @classmethod
    def of(cls, row: PolicyVersion) -> PolicyRef:
        assert row.id is not None
        return cls(row.id, row.version, row.base_model, row.adapter_path, row.parent_id)


def current_policy(*, session: Session) -> PolicyVersion | None:
    return session.exec(select(PolicyVersion).where(col(PolicyVersion.is_current).is_(True))).first()


def ensure_initial_policy(*, session: Session, base_model: str) -> PolicyVersion:
    """The current version; on an empty store, create v0 (the bare base model) as current."""
    found = current_policy(session=session)
    if found is not None:
        return found
    pv = PolicyVersion(version=0, base_model=base_model, is_current=True)
    session.add(pv)
    session.commit()
    session.refresh(pv)
    return pv


def mark_current(*, session: Session, target: PolicyVersion) -> None:
    """Make `target` the only current version (not committed: callers switch inside their own transaction)."""
    for pv in session.exec(select(PolicyVersion).where(col(PolicyVersion.is_current).is_(True))):
        pv.is_current = False
        session.add(pv)
    target.is_current = True
    session.add(target)
    queue_event(
        session=session,
        event="version.switched",
        payload={
            "version": target.version,
            "adapter_path": target.adapter_path,
            "gate": target.gate_decision,
        },
    )


def make_current(*, session: Session, version: int, by: str | None = None) -> PolicyVersion:
    """Switch the current version (also used to roll back) in one transaction; a switch by a person (`by`) is
    recorded on the version with what the gate had said of it (a candidate the gate refused, made current by hand)."""
    target = session.exec(select(PolicyVersion).where(PolicyVersion.version == version)).first()
    if target is None:
        raise ValueError(f"no policy version v{version}")
    if by is not None:
        switch = {"by": by, "at": utcnow().isoformat(timespec="seconds"), "gate": target.gate_decision}
        target.metrics = {**target.metrics, "switches": [*target.metrics.get("switches", []), switch]}
    mark_current(session=session, target=target)
    session.commit()
    session.refresh(target)
    return target


def count_sets(*, session: Session, policy_version_id: int | None) -> int:
    """Generated sets of this version, labeled or not (what a selection budget counts)."""
    query = select(func.count(col(CompletionSet.id))).where(
        CompletionSet.origin == "generated", CompletionSet.policy_version_id == policy_version_id
    )
    return session.exec(query).one()


def count_waiting_sets(*, session: Session, policy_version_id: int | None) -> int:
    """Generated sets of this version that still need labels (rankings below `labels_needed`)."""
    query = select(func.count(col(CompletionSet.id))).where(
        CompletionSet.origin == "generated",
        CompletionSet.policy_version_id == policy_version_id,
        CompletionSet.labels_done < CompletionSet.labels_needed,
    )
    return session.exec(query).one()


def sample_prompts(
    *,
    session: Session,
    count: int,
    policy_version_id: int | None,
    seed: int | None = None,
    later_turns_first: bool = False,
) -> list[Prompt]:
    """Train-split prompts for new sets (none of a stopped branch), those with the fewest sets from this version
    first, then a conversation's later turns first (`later_turns_first`) or its first turns, ties at random."""
    used = (
        select(func.count(col(CompletionSet.id)))
        .where(CompletionSet.prompt_id == Prompt.id, CompletionSet.policy_version_id == policy_version_id)
        .correlate(Prompt)
        .scalar_subquery()
    )
    turn = col(Prompt.turn).desc() if later_turns_first else col(Prompt.turn)
    rows = session.exec(
        select(Prompt, used)
        .where(Prompt.split == "train", col(Prompt.stopped).is_(False))
        .order_by(used, turn)
        .limit(count * 4)
    ).all()
    rng = random.Random(seed)
    sign = -1 if later_turns_first else 1
    rows = sorted(rows, key=lambda r: (r[1], sign * r[0].turn, rng.random()))
    return [p for p, _ in rows[:count]]


def active_labelers(*, session: Session, within_hours: float = 1.0) -> int:
    """Labelers who were given a set recently (sizes the pre-generation buffer)."""
    since = utcnow() - timedelta(hours=within_hours)
    return session.exec(
        select(func.count(func.distinct(Assignment.user_id))).where(Assignment.leased_at >= since)
    ).one()


def policy_by_version(*, session: Session, version: int) -> PolicyVersion | None:
    return session.exec(select(PolicyVersion).where(PolicyVersion.version == version)).first()


def policy_ref(*, session: Session, policy_id: int | None) -> PolicyRef | None:
    """The version with this row id (e.g. a version's parent), detached; None for None or a missing row."""
    row = session.get(PolicyVersion, policy_id) if policy_id is not None else None
    return PolicyRef.of(row) if row is not None else None


def policy_versions(*, session: Session) -> list[PolicyVersion]:
    """Every version, oldest first (the policies tab's lineage table)."""
    return list(session.exec(select(PolicyVersion).order_by(col(PolicyVersion.version))).all())


def next_policy_version(*, session: Session) -> int:
    """The number the next registered version gets (its adapter folder is named after it before it is saved)."""
    latest = session.exec(select(PolicyVersion.version).order_by(col(PolicyVersion.version).desc())).first()
    return (latest or 0) + 1


def register_policy_version(
    *,
    session: Session,
    version: int,
    parent: PolicyRef,
    adapter_path: str,
    reward_model_id: int | None,
    metrics: dict,
    make_current: bool,
) -> PolicyRef:
    """Write `version` (read from `next_policy_version` before its files were saved under that number; the
    number is unique, so a second registrant fails whole) with its parent and the reward model it was trained
    against, its facts as columns (`VersionFacts`), and, if asked, switch to it: one transaction, so a failure
    leaves the current version as it was."""
    facts = VersionFacts.from_metrics(metrics)
    pv = PolicyVersion(
        version=version,
        base_model=parent.base_model,
        adapter_path=adapter_path,
        parent_id=parent.id,
        reward_model_id=reward_model_id,
        metrics=metrics,
        kl=facts.kl,
        heldout_accuracy=facts.heldout_accuracy,
    )
    session.add(pv)
    if make_current:
        mark_current(session=session, target=pv)
    session.commit()
    session.refresh(pv)
    return PolicyRef.of(pv)


@dataclass(frozen=True)
class VersionKL:
    """How far a version is from v0 as its round measured it: `how` is "budget" (the KL budget's measure, after any
    scaling of the update by `scale`, toward the base or the parent version: `toward`) or "PPO rollouts" (PPO's KL
    on its last rollouts)."""

    value: float
    how: str
    budget: float | None = None
    scale: float = 1.0
    toward: str = "base"


def version_kl(metrics: dict) -> VersionKL | None:
    """The version's KL from v0 from its recorded metrics; None where its round measured none (v0, DPO without a
    budget)."""
    fit = metrics.get("kl_budget")
    if fit:
        toward = str(fit.get("scaled_toward", "base"))
        return VersionKL(float(fit["kl"]), "budget", float(fit["budget"]), float(fit["scale"]), toward)
    kl = (metrics.get("final") or {}).get("kl")
    return VersionKL(float(kl), "PPO rollouts") if isinstance(kl, int | float) else None


@dataclass(frozen=True)
class VersionFacts:
    """What a policy stage records about a version for the floors above, stored as the version's columns: its KL
    from v0 as its round measured it, DPO's implicit-reward accuracy on held-out sets (None without them). The
    gate's decision is added by the round (`gate_decision`). The stages' figures stay in `metrics`; this is the one
    place that reads their layout (`final`: the optimiser's last figures; `kl_budget`: the budget's fit)."""

    kl: float | None = None
    heldout_accuracy: float | None = None

    @classmethod
    def from_metrics(cls, metrics: dict) -> VersionFacts:
        kl = version_kl(metrics)
        final = metrics.get("final") or {}
        accuracy = final.get("heldout_accuracy")
        held = bool(final.get("heldout_sets")) and isinstance(accuracy, int | float)
        return cls(kl.value if kl else None, float(accuracy) if held and accuracy is not None else None)


def gate_lines(pv: PolicyVersion) -> list[str]:
    """What the gate of the round that made `pv` said, line by line (none where its round had no gate)."""
    return [str(line) for line in (pv.metrics.get("gate") or {}).get("lines", [])]


def switched_by(pv: PolicyVersion) -> list[str]:
    """Who made `pv` current by hand, oldest first."""
    return [str(s["by"]) for s in pv.metrics.get("switches", [])]


@dataclass(frozen=True)
class Samples:
    """A version's round's answers to the fixed eval prompts: `before` by the parent, `after` by the version (each
    {"prompt", "response", "messages"?}), as the policy stage recorded them."""

    before: list[dict]
    after: list[dict]


def samples_of(pv: PolicyVersion) -> Samples:
    return Samples(list(pv.metrics.get("samples_before", [])), list(pv.metrics.get("samples_after", [])))


def sample_scores(pv: PolicyVersion) -> tuple[list[float], list[float], str | None] | None:
    """The reward model's scores of the version's and its parent's answers to held-out prompts, and the model's
    name, where its round scored them (PPO); None elsewhere."""
    scored = pv.metrics.get("sample_scores") or {}
    if not scored.get("new"):
        return None
    return list(scored["new"]), list(scored["parent"]), scored.get("reward_model")
