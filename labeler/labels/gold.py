"""Gold sets: sets with a known answer, mixed into every labeler's queue at the gold rate (labeler/store/leasing.py)
and shown like any other set, that score each labeler. A score is Kendall tau-b between the labeler's ranking
and the known one over the answers both rank (ties on either side earn partial credit), and the share of the
known-flagged answers the labeler flagged. Gold sets are a measuring instrument: they are not reward-model
training data and never fill up (every labeler may rank each once).

    rankloop gold mark 42 --ranks 2,1,3,4 [--flag 4]   # copy set 42 as gold; ranks by answer position
    rankloop gold mark 42 --from-consensus               # its labelers' merged order is the known answer
    rankloop gold generate --count 20                    # answers ranked by verifiable instructions met
    rankloop gold rate 0.1                               # a tenth of leases give a gold set
    rankloop gold scores                                 # per labeler: sets, mean tau, flags caught
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from labeler.labels.consensus import consensus_order, kendall_tau_b
from labeler.labels.dataset import SetRankings, load_set_rankings
from labeler.labels.judges import judge_ids
from labeler.labels.pairs import FlagMode, RankingView
from labeler.labels.reliability import Comparison, Reliability, fit_reliability, votes_from_sets
from labeler.store.store import CompletionIn, add_completion_set
from labeler.store.tables import Completion, CompletionSet, id_of
from labeler.store.users import user_names


@dataclass(frozen=True)
class GoldAnswer:
    """The known answer of a gold set: a rank per completion id (1 best; equal ranks tie) and flagged ids."""

    ranks: dict[int, int]
    flagged: frozenset[int] = frozenset()

    def to_json(self) -> dict:
        return {"ranks": {str(k): v for k, v in self.ranks.items()}, "flagged": sorted(self.flagged)}

    @classmethod
    def from_json(cls, data: Mapping) -> GoldAnswer:
        return cls({int(k): int(v) for k, v in data["ranks"].items()}, frozenset(data.get("flagged", [])))


def check_answer(ranks: Sequence[int | None], flagged: Sequence[int], answers: int) -> None:
    """`ranks`: one per answer position (None for a flagged one); ValueError naming what is wrong."""
    if len(ranks) != answers:
        raise ValueError(
            f"--ranks gives {len(ranks)} ranks for a set of {answers} answers: give one per answer"
        )
    bad = [p for p in flagged if not 1 <= p <= answers]
    if bad:
        raise ValueError(f"--flag {bad[0]}: positions run from 1 to {answers}")
    ranked = [r for p, r in enumerate(ranks, 1) if p not in flagged and r is not None]
    if len(ranked) < 2:
        raise ValueError("a gold answer ranks at least two answers")
    if any(r < 1 for r in ranked):
        raise ValueError("ranks start at 1 (the best answer)")


def parse_ranks(text: str) -> list[int | None]:
    """'2,1,3,4' (one rank per answer position; '-' or 'f' for a flagged answer) -> [2, 1, 3, 4]."""
    out: list[int | None] = []
    for k, part in enumerate(text.split(","), 1):
        part = part.strip()
        if part in ("-", "f"):
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(f"ranks: answer {k} has {part!r}; give a whole number, or '-' for a flagged one")
    return out


def add_gold_set(
    *,
    session: Session,
    prompt_id: int,
    completions: Sequence[CompletionIn],
    ranks: Sequence[int | None],
    flagged: Sequence[int] = (),
    policy_version_id: int | None = None,
    source: str = "",
) -> CompletionSet:
    """A new gold set: `completions` in position order, `ranks` per position (None or a position in `flagged`,
    1-based, for a flagged answer). One transaction."""
    check_answer(ranks, flagged, len(completions))
    cset, rows = add_completion_set(
        session=session,
        prompt_id=prompt_id,
        completions=completions,
        policy_version_id=policy_version_id,
        labels_needed=0,  # out of the open-sets index: gold sets are leased at the gold rate only
        origin="gold",
        source=source,
        commit=False,
    )
    answer = GoldAnswer(
        {
            id_of(c): r
            for p, (c, r) in enumerate(zip(rows, ranks, strict=True), 1)
            if r is not None and p not in flagged
        },
        frozenset(id_of(rows[p - 1]) for p in flagged),
    )
    cset.gold = answer.to_json()
    session.add(cset)
    session.commit()
    session.refresh(cset)
    return cset


def mark_gold(
    *,
    session: Session,
    set_id: int,
    ranks: Sequence[int | None] | None = None,
    flagged: Sequence[int] = (),
    from_consensus: bool = False,
) -> CompletionSet:
    """A gold copy of set `set_id` (its prompt and answers; the original keeps its labels) with the known answer
    given by position, or the consensus order of the rankings the set received."""
    source = session.get(CompletionSet, set_id)
    if source is None:
        raise ValueError(f"set {set_id} is not in the store")
    if source.origin == "gold":
        raise ValueError(f"set {set_id} is a gold set already")
    answers = list(
        session.exec(select(Completion).where(Completion.set_id == set_id).order_by(col(Completion.position)))
    )
    if from_consensus:
        found = load_set_rankings(session=session, set_ids=[set_id])
        if not found:
            raise ValueError(f"set {set_id} has no rankings to take a consensus from")
        order = consensus_order(found[0].rankings)
        ranks = [order.get(id_of(c)) for c in answers]
        flagged = [p for p, r in enumerate(ranks, 1) if r is None]
    if ranks is None:
        raise ValueError("give the known ranking (--ranks, one per answer) or --from-consensus")
    flagged = sorted(set(flagged) | {p for p, r in enumerate(ranks, 1) if r is None})  # no rank: flagged
    return add_gold_set(
        session=session,
        prompt_id=source.prompt_id,
        completions=[CompletionIn(c.text, c.token_count, c.finish_reason) for c in answers],
        ranks=list(ranks),
        flagged=flagged,
        policy_version_id=source.policy_version_id,
        source=f"gold:set-{set_id}",
    )


@dataclass(frozen=True)
class GoldScore:
    sets: int
    mean_tau: float | None  # Kendall tau-b with the known ranking, averaged over gold sets
    flags_caught: float | None  # share of known-flagged answers this labeler flagged
    taus: list[float] = field(default_factory=list)


def score_ranking(ranking: RankingView, answer: GoldAnswer) -> tuple[float | None, list[bool]]:
    """Tau-b over the answers both rank (flagged ones left out), and per known-flagged answer: flagged here?"""
    mine = {k: v for k, v in ranking.ranks.items() if k not in ranking.flagged}
    return kendall_tau_b(mine, answer.ranks), [k in ranking.flagged for k in sorted(answer.flagged)]


def gold_sets(*, session: Session) -> dict[int, GoldAnswer]:
    rows = session.exec(
        select(CompletionSet.id, CompletionSet.gold).where(CompletionSet.origin == "gold")
    ).all()
    return {i: GoldAnswer.from_json(g) for i, g in rows if i is not None and g}


def scores_from(sets: Sequence[SetRankings], answers: dict[int, GoldAnswer]) -> dict[str | int, GoldScore]:
    """Per labeler, over the gold sets they ranked (skips and "none acceptable" score nothing)."""
    taus: dict[str | int, list[float]] = defaultdict(list)
    caught: dict[str | int, list[bool]] = defaultdict(list)
    for s in sets:
        if s.set_id not in answers:
            continue
        for r in s.rankings:
            if r.labeler is None or r.skipped or r.none_acceptable:
                continue
            tau, flags = score_ranking(r, answers[s.set_id])
            if tau is not None:
                taus[r.labeler].append(tau)
            caught[r.labeler].extend(flags)
    out = {}
    for who in set(taus) | set(caught):
        t, c = taus.get(who, []), caught.get(who, [])
        out[who] = GoldScore(
            len(t), statistics.fmean(t) if t else None, sum(c) / len(c) if c else None, list(t)
        )
    return out


def gold_scores(*, session: Session) -> dict[str | int, GoldScore]:
    answers = gold_sets(session=session)
    return scores_from(load_set_rankings(session=session, set_ids=list(answers)), answers) if answers else {}


def named_scores(*, session: Session) -> list[tuple[str, GoldScore]]:
    """Gold scores by account name, the best mean tau first (labelers with none last)."""
    names = user_names(session=session)
    scores = [
        (names.get(k, str(k)) if isinstance(k, int) else k, v)
        for k, v in gold_scores(session=session).items()
    ]
    return sorted(scores, key=lambda kv: (kv[1].mean_tau is None, -(kv[1].mean_tau or 0.0), kv[0]))


def fit_with_gold(
    *, session: Session, sets: Sequence[SetRankings], flagged: FlagMode = "drop"
) -> Reliability:
    """The reliability model over every vote in `sets`, the gold sets' known orders clamped, judges never read
    reversed."""
    votes = votes_from_sets(((s.set_id, s.rankings) for s in sets), flagged)
    judges = frozenset(judge_ids(session=session))
    return fit_reliability(votes, gold=gold_comparisons(gold_sets(session=session)), judges=judges)


def gold_comparisons(answers: dict[int, GoldAnswer]) -> dict[Comparison, bool]:
    """The known orders as comparisons for the reliability fit (labeler/labels/reliability.py): True = first wins."""
    out = {}
    for set_id, answer in answers.items():
        ids = sorted(answer.ranks)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if answer.ranks[a] != answer.ranks[b]:
                    out[(set_id, a, b)] = answer.ranks[a] < answer.ranks[b]
    return out
