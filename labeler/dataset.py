"""From the store to preference records: every set's rankings, merged across labelers, as text pairs.

records = preference_records(session=session, settings=PairSettings())
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from labeler.consensus import pair_votes
from labeler.pairs import PairSettings, RankingView
from labeler.tables import Completion, CompletionSet, PolicyVersion, Prompt, Ranking


@dataclass(slots=True)
class PreferenceRecord:
    """One consensus comparison with the context needed for training, evaluation and export."""

    set_id: int
    prompt_id: int
    prompt: list[dict]
    chosen: str
    rejected: str
    margin: float
    num_labelers: int
    agreement: float
    policy_version: int | None
    origin: str
    split: str
    chosen_id: int
    rejected_id: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SetRankings:
    """A set with its completions (id -> text) and the rankings it received."""

    set_id: int
    prompt_id: int
    policy_version: int | None
    origin: str
    texts: dict[int, str]
    rankings: list[RankingView]
    source: str = ""


def load_set_rankings(*, session: Session, set_ids: Sequence[int] | None = None) -> list[SetRankings]:
    """All ranked sets (or the given ones) with their completions and rankings, in a few bulk queries."""
    rq = select_columns(  # more columns than sqlmodel's typed select takes
        col(Ranking.set_id),
        col(Ranking.user_id),
        col(Ranking.ranks),
        col(Ranking.flags),
        col(Ranking.none_acceptable),
        col(Ranking.skipped),
    )
    if set_ids is not None:
        rq = rq.where(col(Ranking.set_id).in_(list(set_ids)))
    by_set: dict[int, list[RankingView]] = defaultdict(list)
    for set_id, user_id, ranks, flags, none_acceptable, skipped in session.execute(rq):
        view = RankingView(
            {int(k): v for k, v in ranks.items()},
            frozenset(int(k) for k in flags),
            none_acceptable,
            skipped,
            user_id,
        )
        by_set[set_id].append(view)
    if not by_set:
        return []
    ids = sorted(by_set)
    versions = dict(session.exec(select(PolicyVersion.id, PolicyVersion.version)).all())
    sets = {
        s_id: (p_id, versions.get(pv), origin, source)
        for s_id, p_id, pv, origin, source in session.execute(
            select_columns(
                col(CompletionSet.id),
                col(CompletionSet.prompt_id),
                col(CompletionSet.policy_version_id),
                col(CompletionSet.origin),
                col(CompletionSet.source),
            )
        )
        if s_id in by_set
    }
    texts: dict[int, dict[int, str]] = defaultdict(dict)
    for c_id, s_id, text in session.exec(select(col(Completion.id), Completion.set_id, Completion.text)):
        if s_id in by_set and c_id is not None:
            texts[s_id][c_id] = text
    return [SetRankings(i, sets[i][0], sets[i][1], sets[i][2], texts[i], by_set[i], sets[i][3]) for i in ids]


def records_from_sets(
    sets: Sequence[SetRankings], prompts: dict[int, tuple[list[dict], str]], settings: PairSettings
) -> list[PreferenceRecord]:
    """Consensus pairs of every set as records (pure; `prompts` maps id -> (messages, split))."""
    out = []
    for s in sets:
        messages, split = prompts[s.prompt_id]
        voters = sum(1 for r in s.rankings if not (r.skipped or r.none_acceptable))
        for p in pair_votes(s.rankings, settings):
            out.append(
                PreferenceRecord(
                    set_id=s.set_id,
                    prompt_id=s.prompt_id,
                    prompt=messages,
                    chosen=s.texts[p.chosen],
                    rejected=s.texts[p.rejected],
                    margin=p.margin,
                    num_labelers=voters,
                    agreement=p.agreement,
                    policy_version=s.policy_version,
                    origin=s.origin,
                    split=split,
                    chosen_id=p.chosen,
                    rejected_id=p.rejected,
                )
            )
    return out


def load_prompts(*, session: Session, prompt_ids: set[int]) -> dict[int, tuple[list[dict], str]]:
    return {
        p_id: (list(messages), split)
        for p_id, messages, split in session.exec(select(col(Prompt.id), Prompt.messages, Prompt.split))
        if p_id in prompt_ids
    }


def preference_records(
    *,
    session: Session,
    settings: PairSettings = PairSettings(),
    origins: Sequence[str] | None = None,
    sets: Sequence[SetRankings] | None = None,
) -> list[PreferenceRecord]:
    """Every usable comparison in the store (or in the given `sets`), merged across labelers, optionally
    limited to some origins."""
    if sets is None:
        sets = load_set_rankings(session=session)
    if origins is not None:
        sets = [s for s in sets if s.origin in origins]
    prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in sets})
    return records_from_sets(sets, prompts, settings)
