"""From the store to preference records: every set's rankings, merged across labelers, as text pairs.

records = preference_records(session=session, settings=PairSettings())
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Select
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from labeler.labels.consensus import pair_votes
from labeler.labels.pairs import PairSettings, RankingView, casts_votes
from labeler.labels.reliability import Reliability, weighted_pairs
from labeler.store.tables import Completion, CompletionSet, PolicyVersion, Prompt, Ranking


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
    # provenance: who voted, how the pair was decided and how much it counts, how the set was made and chosen
    labelers: list[int] = field(default_factory=list)  # user ids of the set's voters
    consensus: str = "majority"  # or "reliability" (labeler/labels/reliability.py)
    weight: float = 1.0  # 2P - 1 under reliability weights
    sampling: dict = field(default_factory=dict)
    selection: dict | None = None
    # who wrote each answer (labeler/store/tables.py's Completion.origin): `edit` for a labeler's rewrite
    chosen_origin: str = "generated"
    rejected_origin: str = "generated"

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
    sampling: dict = field(default_factory=dict)
    selection: dict | None = None
    # the completions not written by a policy (id -> origin, e.g. `edit`); the others are `generated`
    answer_origins: dict[int, str] = field(default_factory=dict)

    def origin_of(self, completion_id: int) -> str:
        return self.answer_origins.get(completion_id, "generated")


ID_CHUNK = 5_000  # ids per IN (...) list: under SQLite's and PostgreSQL's bound-parameter limits


def _chunks(ids: Sequence[int] | None) -> list[list[int] | None]:
    """The ids in IN-sized lists, or [None] (no filter) for every set."""
    if ids is None:
        return [None]
    unique = sorted(set(ids))
    return [unique[k : k + ID_CHUNK] for k in range(0, len(unique), ID_CHUNK)]


def load_set_rankings(*, session: Session, set_ids: Sequence[int] | None = None) -> list[SetRankings]:
    """All ranked sets (or the given ones) with their completions and rankings, in a few bulk queries (given ids:
    only their rows are read, so a few sets cost the same in any size of store)."""
    by_set: dict[int, list[RankingView]] = defaultdict(list)
    for chunk in _chunks(set_ids):
        for set_id, user_id, ranks, flags, none_acceptable, skipped in session.execute(
            _rankings_query(chunk)
        ):
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
    chunks = _chunks(None if set_ids is None else ids)
    versions = dict(session.exec(select(PolicyVersion.id, PolicyVersion.version)).all())
    sets = {}
    texts: dict[int, dict[int, str]] = defaultdict(dict)
    origins: dict[int, dict[int, str]] = defaultdict(dict)
    for chunk in chunks:
        for s_id, p_id, pv, origin, source, sampling, chosen in session.execute(_sets_query(chunk)):
            if s_id in by_set:
                sets[s_id] = (p_id, versions.get(pv), origin, source, sampling or {}, chosen)
        answers = select(col(Completion.id), Completion.set_id, Completion.text, Completion.origin)
        if chunk is not None:
            answers = answers.where(col(Completion.set_id).in_(chunk))
        for c_id, s_id, text, answer_origin in session.exec(answers):
            if s_id in by_set and c_id is not None:
                texts[s_id][c_id] = text
                if answer_origin != "generated":
                    origins[s_id][c_id] = answer_origin
    return [
        SetRankings(i, sets[i][0], sets[i][1], sets[i][2], texts[i], by_set[i], *sets[i][3:], origins[i])
        for i in ids
    ]


def _rankings_query(chunk: list[int] | None) -> Select[*tuple[Any, ...]]:
    query = select_columns(  # more columns than sqlmodel's typed select takes
        col(Ranking.set_id),
        col(Ranking.user_id),
        col(Ranking.ranks),
        col(Ranking.flags),
        col(Ranking.none_acceptable),
        col(Ranking.skipped),
    )
    return query if chunk is None else query.where(col(Ranking.set_id).in_(chunk))


def _sets_query(chunk: list[int] | None) -> Select[*tuple[Any, ...]]:
    query = select_columns(
        col(CompletionSet.id),
        col(CompletionSet.prompt_id),
        col(CompletionSet.policy_version_id),
        col(CompletionSet.origin),
        col(CompletionSet.source),
        col(CompletionSet.sampling),
        col(CompletionSet.selection),
    )
    return query if chunk is None else query.where(col(CompletionSet.id).in_(chunk))


def set_ids_of_version(*, session: Session, version: int) -> list[int]:
    """The ids of the sets one policy version wrote."""
    ids = session.exec(
        select(CompletionSet.id)
        .join(PolicyVersion, col(PolicyVersion.id) == col(CompletionSet.policy_version_id))
        .where(PolicyVersion.version == version)
    ).all()
    return [i for i in ids if i is not None]


def sets_of_version(*, session: Session, version: int) -> list[SetRankings]:
    """The ranked sets one policy version wrote (what DPO with `data=parent` trains on), loaded alone."""
    return load_set_rankings(session=session, set_ids=set_ids_of_version(session=session, version=version))


IdVote = tuple[int, int, float, float]  # (chosen id, rejected id, margin, agreement)


def consensus_of(
    s: SetRankings, settings: PairSettings, reliability: Reliability | None
) -> tuple[list[IdVote], list[float]]:
    """A set's consensus pairs and their weights ([] = all 1): by head count (agreement = the winning share of
    votes), or by reliability weights (agreement = the posterior that the chosen answer wins)."""
    if reliability is None or all(r.labeler is None for r in s.rankings):
        return [(p.chosen, p.rejected, p.margin, p.agreement) for p in pair_votes(s.rankings, settings)], []
    pairs = weighted_pairs(s.set_id, s.rankings, reliability, settings.flagged)
    kept = [p for p in pairs if p.confidence >= settings.min_agreement]
    return [(p.chosen, p.rejected, p.margin, p.confidence) for p in kept], [p.weight for p in kept]


def records_from_sets(
    sets: Sequence[SetRankings],
    prompts: dict[int, tuple[list[dict], str]],
    settings: PairSettings,
    reliability: Reliability | None = None,
) -> list[PreferenceRecord]:
    """Consensus pairs of every set as records (pure; `prompts` maps id -> (messages, split)); with
    `reliability`, pairs decided by the reliability-weighted votes and weighted 2P - 1."""
    out = []
    for s in sets:
        messages, split = prompts[s.prompt_id]
        voting = [r for r in s.rankings if casts_votes(r)]
        voters = [r.labeler for r in voting if isinstance(r.labeler, int)]
        votes, weights = consensus_of(s, settings, reliability)
        method = "reliability" if weights else "majority"
        for k, (chosen, rejected, margin, agreement) in enumerate(votes):
            out.append(
                PreferenceRecord(
                    set_id=s.set_id,
                    prompt_id=s.prompt_id,
                    prompt=messages,
                    chosen=s.texts[chosen],
                    rejected=s.texts[rejected],
                    margin=margin,
                    num_labelers=len(voting),
                    agreement=agreement,
                    policy_version=s.policy_version,
                    origin=s.origin,
                    split=split,
                    chosen_id=chosen,
                    rejected_id=rejected,
                    labelers=voters,
                    consensus=method,
                    weight=weights[k] if weights else 1.0,
                    sampling=s.sampling,
                    selection=s.selection,
                    chosen_origin=s.origin_of(chosen),
                    rejected_origin=s.origin_of(rejected),
                )
            )
    return out


def load_prompts(*, session: Session, prompt_ids: set[int]) -> dict[int, tuple[list[dict], str]]:
    """Each prompt's messages and split, by id: a few ids read by id, many by one pass over the table."""
    query = select(col(Prompt.id), Prompt.messages, Prompt.split)
    if len(prompt_ids) <= ID_CHUNK:
        query = query.where(col(Prompt.id).in_(list(prompt_ids)))
    return {
        p_id: (list(messages), split)
        for p_id, messages, split in session.exec(query)
        if p_id is not None and p_id in prompt_ids
    }


def preference_records(
    *,
    session: Session,
    settings: PairSettings = PairSettings(),
    origins: Sequence[str] | None = None,
    sets: Sequence[SetRankings] | None = None,
    reliability: Reliability | None = None,
) -> list[PreferenceRecord]:
    """Every usable comparison in the store (or in the given `sets`), merged across labelers (by head count, or
    by `reliability` weights), optionally limited to some origins."""
    if sets is None:
        sets = load_set_rankings(session=session)
    if origins is not None:
        sets = [s for s in sets if s.origin in origins]
    prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in sets})
    return records_from_sets(sets, prompts, settings, reliability)


@dataclass
class BestAnswer:
    """An answer to fine-tune on (SFT): a labeler's edit that their ranking holds, or an answer every labeler who
    ranked its set ranked first."""

    set_id: int
    prompt_id: int
    prompt: list[dict]
    completion: str
    completion_id: int
    why: str  # `edit` | `ranked first by all` | `revision ranked first by all`
    origin: str  # the answer's: `edit`, `revision` or `generated`
    split: str
    labelers: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def best_of_set(s: SetRankings) -> list[tuple[int, str]]:
    """The set's answers worth imitating, with why (pure): its labelers' edits still held by a ranking, then the
    policy's answers and revisions that every voting labeler ranked first (none flagged them)."""
    voting = [r for r in s.rankings if casts_votes(r)]
    edits = [
        cid
        for cid in sorted(s.answer_origins)
        if s.origin_of(cid) == "edit" and any(cid in r.ranks for r in voting)
    ]
    firsts = [
        cid
        for cid in sorted(s.texts)
        if s.origin_of(cid) != "edit"
        and voting
        and not any(cid in r.flagged for r in s.rankings)
        and all(r.ranks.get(cid) == min(r.ranks.values()) for r in voting)
    ]
    why = {"revision": "revision ranked first by all"}
    return [(cid, "edit") for cid in edits] + [
        (cid, why.get(s.origin_of(cid), "ranked first by all")) for cid in firsts
    ]


def best_answers(*, session: Session, sets: Sequence[SetRankings] | None = None) -> list[BestAnswer]:
    """Every set's best answers (`best_of_set`) with their prompts, gold sets left out: the SFT data."""
    every = load_set_rankings(session=session) if sets is None else sets
    chosen = [s for s in every if s.origin != "gold"]
    prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in chosen})
    return [
        BestAnswer(
            set_id=s.set_id,
            prompt_id=s.prompt_id,
            prompt=prompts[s.prompt_id][0],
            completion=s.texts[cid],
            completion_id=cid,
            why=why,
            origin=s.origin_of(cid),
            split=prompts[s.prompt_id][1],
            labelers=[r.labeler for r in s.rankings if casts_votes(r) and isinstance(r.labeler, int)],
        )
        for s in chosen
        for cid, why in best_of_set(s)
    ]
