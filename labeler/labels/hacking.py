"""The reward-hacking review list: answers the reward model scores highest in their set although a labeler flagged
them or ranked them last. A reward model that likes what people reject is what PPO will exploit, so these go to
an admin (Admin > Training > reward-hacking review) with their counts per reward model, one per round.

    sets = sets_with_complaints(session=session)      # torch-free: which answers people rejected, and how
    scores = ...                                      # the reward model's score of every answer (rlhf/train/reward.py)
    suspects = hacking_suspects(sets, scores)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from labeler.labels.dataset import SetRankings, load_prompts, load_set_rankings
from labeler.labels.pairs import effective_ranks


@dataclass(frozen=True)
class ComplaintSet:
    """A ranked set in which some answer was flagged or ranked last; `complaints` maps those answers to why."""

    set_id: int
    prompt: list[dict]
    completion_ids: list[int]
    texts: list[str]
    complaints: dict[int, list[str]]


@dataclass(frozen=True)
class Suspect:
    set_id: int
    completion_id: int
    prompt: str
    text: str
    score: float
    margin: float  # how far above the set's next-best answer the reward model put it
    why: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def complaints_in(rankings: Sequence, completion_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per answer, who rejected it: 'flagged' or 'ranked last' once per labeler (ties for last count too, a
    ranking that puts every answer on one rank does not)."""
    found: dict[int, list[str]] = {}
    for view in rankings:
        if view.skipped or view.none_acceptable:
            continue
        for cid in view.flagged:
            found.setdefault(cid, []).append("flagged")
        ranks = effective_ranks(view, "drop")
        if len(set(ranks.values())) > 1:
            worst = max(ranks.values())
            for cid, rank in ranks.items():
                if rank == worst and cid in completion_ids:
                    found.setdefault(cid, []).append("ranked last")
    return found


def sets_with_complaints(
    *, session: Session, sets: Sequence[SetRankings] | None = None
) -> list[ComplaintSet]:
    """`sets`: the ranked sets when the caller has loaded them already (the reward stage), else read here."""
    sets = load_set_rankings(session=session) if sets is None else sets
    prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in sets})
    out = []
    for s in sets:
        ids = sorted(s.texts)
        complaints = complaints_in(s.rankings, ids)
        if complaints and len(ids) > 1:
            out.append(
                ComplaintSet(s.set_id, prompts[s.prompt_id][0], ids, [s.texts[i] for i in ids], complaints)
            )
    return out


def hacking_suspects(
    sets: Sequence[ComplaintSet], scores: Sequence[Sequence[float]], limit: int = 50
) -> list[Suspect]:
    """The answers the reward model puts strictly first in their set while labelers rejected them, the widest
    margins first (at most `limit`)."""
    found = []
    for s, set_scores in zip(sets, scores, strict=True):
        order = sorted(range(len(set_scores)), key=lambda k: -set_scores[k])
        top, runner_up = order[0], order[1]
        cid = s.completion_ids[top]
        margin = set_scores[top] - set_scores[runner_up]
        if cid in s.complaints and margin > 0:
            counts = {why: s.complaints[cid].count(why) for why in dict.fromkeys(s.complaints[cid])}
            why = ", ".join(f"{why} by {n}" for why, n in counts.items())
            prompt = s.prompt[-1]["content"] if s.prompt else ""
            found.append(Suspect(s.set_id, cid, prompt, s.texts[top], set_scores[top], margin, why))
    found.sort(key=lambda x: -x.margin)
    return found[:limit]
