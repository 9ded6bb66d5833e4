"""Reward-model data: ranked sets from the store as groups (unique completions + consensus pairs), a stable
split by prompt, and the frozen snapshot saved with each model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlmodel import Session

from labeler.labels.dataset import SetRankings, consensus_of, load_prompts, load_set_rankings
from labeler.labels.pairs import PairSettings, RankingView
from labeler.labels.reliability import Reliability
from labeler.store.store import messages_hash

NoneAcceptable = Literal["exclude", "below_reference"]


@dataclass
class Group:
    """One ranked set: its completions (scored once each) and the consensus pairs among them."""

    set_id: int
    prompt: list[dict]
    prompt_key: str
    completion_ids: list[int]
    texts: list[str]
    pairs: list[tuple[int, int, float, float]]  # (chosen index, rejected index, margin, agreement)
    rankings: list[RankingView] = field(default_factory=list)
    origin: str = "generated"
    source: str = ""
    negatives: list[int] = field(default_factory=list)  # answers of a "none acceptable" set (indices)
    weights: list[float] = field(default_factory=list)  # per pair (labeler_weights=reliability); empty: all 1


def load_groups(
    *,
    session: Session,
    settings: PairSettings,
    include_imported: bool = True,
    none_acceptable: NoneAcceptable = "exclude",
    sets: Sequence[SetRankings] | None = None,
    reliability: Reliability | None = None,
) -> list[Group]:
    """Every ranked set with consensus pairs as a Group. With `none_acceptable="below_reference"`, a set that
    a labeler marked "none acceptable" also lists all its answers as `negatives` (each to score below a
    reference answer at 0), and such a set is kept even when it has no pairs. With `reliability`, each pair is
    decided by the reliability-weighted votes and weighs 2P - 1 (labeler/labels/reliability.py) instead of a head
    count; sets no known labeler ranked (imported pairs) keep the head count at weight 1."""
    every = load_set_rankings(session=session) if sets is None else sets
    # gold sets measure labelers (labeler/labels/gold.py); they are not training data
    sets = [s for s in every if (include_imported or s.origin != "imported") and s.origin != "gold"]
    prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in sets})
    groups = []
    for s in sets:
        votes, weights = consensus_of(s, settings, reliability)
        rejected_all = none_acceptable == "below_reference" and any(
            r.none_acceptable and not r.skipped for r in s.rankings
        )
        if not votes and not rejected_all:
            continue
        ids = sorted(s.texts) if rejected_all else sorted({i for c, r, _, _ in votes for i in (c, r)})
        index = {cid: k for k, cid in enumerate(ids)}
        # a labeler's edit is the answer a "none acceptable" set lacked: never trained below the reference
        negatives = [index[cid] for cid in ids if s.origin_of(cid) != "edit"] if rejected_all else []
        messages = prompts[s.prompt_id][0]
        groups.append(
            Group(
                set_id=s.set_id,
                prompt=messages,
                prompt_key=messages_hash(messages),
                completion_ids=ids,
                texts=[s.texts[i] for i in ids],
                pairs=[(index[c], index[r], margin, agree) for c, r, margin, agree in votes],
                rankings=s.rankings,
                origin=s.origin,
                source=s.source,
                negatives=negatives,
                weights=weights,
            )
        )
    return groups


def is_heldout(prompt_key: str, fraction: float) -> bool:
    """Stable across rounds: depends only on the prompt's content."""
    return int(hashlib.sha256(("heldout:" + prompt_key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def split_by_prompt(
    groups: list[Group], eval_fraction: float, heldout_sources: list[str] | None = None
) -> tuple[list[Group], list[Group]]:
    """Train and held-out groups; one prompt never lands on both sides. With `heldout_sources`, the prompts of
    sets whose source starts with one of them are held out instead of a hashed share."""
    if heldout_sources:
        keys = {g.prompt_key for g in groups if g.source.startswith(tuple(heldout_sources))}
    else:
        keys = {g.prompt_key for g in groups if is_heldout(g.prompt_key, eval_fraction)}
    return [g for g in groups if g.prompt_key not in keys], [g for g in groups if g.prompt_key in keys]


def explode(groups: list[Group]) -> list[Group]:
    """Each pair as its own two-completion group (the per-pair baseline scores both texts of every pair); the
    answers of a "none acceptable" set each as a one-answer group with no pair."""
    out = []
    for g in groups:
        for k, (c, r, margin, agree) in enumerate(g.pairs):
            out.append(
                Group(
                    g.set_id,
                    g.prompt,
                    g.prompt_key,
                    [g.completion_ids[c], g.completion_ids[r]],
                    [g.texts[c], g.texts[r]],
                    [(0, 1, margin, agree)],
                    g.rankings,
                    g.origin,
                    weights=g.weights[k : k + 1],
                )
            )
        for k in g.negatives:
            out.append(
                Group(
                    g.set_id,
                    g.prompt,
                    g.prompt_key,
                    [g.completion_ids[k]],
                    [g.texts[k]],
                    [],
                    g.rankings,
                    g.origin,
                    negatives=[0],
                )
            )
    return out


SEEN_FILE = "seen_sets.json"


def seen_counts(groups: Sequence[Group]) -> dict[int, int]:
    """What a model has learned from or been evaluated on: each set's id and how many rankings it had then."""
    return {g.set_id: len(g.rankings) for g in groups}


def unseen(groups: Sequence[Group], seen: dict[int, int]) -> list[Group]:
    """The groups a model with `seen` (from `seen_counts`) has not met: new sets, and sets ranked again since
    (their consensus may have changed)."""
    return [g for g in groups if seen.get(g.set_id) != len(g.rankings)]


def write_seen(folder: Path, seen: dict[int, int]) -> Path:
    path = folder / SEEN_FILE
    path.write_text(json.dumps({str(k): v for k, v in sorted(seen.items())}))
    return path


def read_seen(folder: Path) -> dict[int, int]:
    """The seen sets saved with a reward model; {} for a model saved before they were recorded."""
    path = folder / SEEN_FILE
    if not path.exists():
        return {}
    return {int(k): int(v) for k, v in json.loads(path.read_text()).items()}


def write_snapshot(path: Path, train: list[Group], heldout: list[Group], settings: dict) -> Path:
    """Exactly what was trained and evaluated on, one pair per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"settings": settings}) + "\n")
        for split, groups in (("train", train), ("heldout", heldout)):
            for g in groups:
                for c, r, margin, agree in g.pairs:
                    row = {
                        "split": split,
                        "set_id": g.set_id,
                        "prompt": g.prompt,
                        "chosen": g.texts[c],
                        "rejected": g.texts[r],
                        "margin": margin,
                        "agreement": agree,
                    }
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
