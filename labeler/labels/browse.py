"""Browsing the store (the admin's "Browse" tab, labeler/ui/admin_browse.py): prompts by text and split, ranked
sets by labeler, policy version, flags and disagreement, and one set with every label, the consensus order and
the pairs it produced. Reads only; plain rows, so it is tested without a browser.

    find_prompts(session=s, query="haiku", split="eval")
    find_ranked_sets(session=s, labeler="alice", disagreement_only=True)
    set_detail(session=s, set_id=12)        # ValueError when there is no such set
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations

from sqlalchemy import String, cast, func
from sqlmodel import Session, col, select

from labeler.labels.consensus import consensus_order, pair_votes
from labeler.labels.dataset import SetRankings, load_set_rankings
from labeler.labels.pairs import PairSettings, RankingView
from labeler.store.tables import Completion, CompletionSet, PolicyVersion, Prompt, Ranking, User

SPLITS = ("all", "train", "eval")
MAX_ROWS = 200
SCAN_BATCH = 1_000  # ranked sets read at a time while looking for a list's rows


def last_user_turn(messages: list[dict]) -> str:
    """The text a list shows for a conversation: its last user turn (the whole conversation is in `set_detail`)."""
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    return users[-1] if users else (str(messages[-1].get("content", "")) if messages else "")


@dataclass(frozen=True)
class PromptRow:
    prompt_id: int
    split: str
    source: str
    turns: int
    text: str  # the last user turn
    sets: int


def find_prompts(
    *, session: Session, query: str = "", split: str = "all", limit: int = MAX_ROWS
) -> list[PromptRow]:
    """Prompts whose conversation contains `query` (case-insensitive; any turn), in `split`, newest first."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    counts = (
        select(CompletionSet.prompt_id, func.count(col(CompletionSet.id)).label("n"))
        .group_by(col(CompletionSet.prompt_id))
        .subquery()
    )
    stmt = select(Prompt, counts.c.n).join(counts, counts.c.prompt_id == Prompt.id, isouter=True)
    if split != "all":
        stmt = stmt.where(Prompt.split == split)
    if query.strip():
        stmt = stmt.where(cast(Prompt.messages, String).ilike(f"%{query.strip()}%"))
    rows = session.exec(stmt.order_by(col(Prompt.id).desc()).limit(limit)).all()
    return [
        PromptRow(p.id or 0, p.split, p.source, len(p.messages), last_user_turn(p.messages), n or 0)
        for p, n in rows
    ]


@dataclass(frozen=True)
class RankedSetRow:
    set_id: int
    prompt: str
    version: int | None
    origin: str
    labels: int
    labelers: str
    agreement: float | None  # raw_agreement: 1 when every labeler orders every pair alike
    flags: int
    none_acceptable: int
    skipped: int


def raw_agreement(rankings: list[RankingView]) -> float | None:
    """How much a set's labelers agree: over the answer pairs two or more of them ordered, the mean share of
    the majority side (1: all agree; 0.5: an even split). Split pairs count here, where the consensus drops
    them. None with fewer than two voters on any pair."""
    votes: dict[tuple[int, int], list[int]] = {}
    for r in rankings:
        if r.skipped or r.none_acceptable:
            continue
        for a, b in combinations(sorted(r.ranks), 2):
            if r.ranks[a] != r.ranks[b]:
                votes.setdefault((a, b), []).append(1 if r.ranks[a] < r.ranks[b] else 0)
    shares = [max(sum(v), len(v) - sum(v)) / len(v) for v in votes.values() if len(v) > 1]
    return round(sum(shares) / len(shares), 3) if shares else None


def find_ranked_sets(
    *,
    session: Session,
    labeler: str = "",
    version: int | None = None,
    flagged_only: bool = False,
    disagreement_only: bool = False,
    limit: int = MAX_ROWS,
) -> list[RankedSetRow]:
    """Ranked sets, newest first, filtered by a labeler's name, a policy version, flags, and disagreement (a
    pair of answers two labelers ordered differently). Reads the store newest first, `SCAN_BATCH` sets at a time,
    until `limit` rows are found: the newest rows cost the same in any size of store."""
    names = dict(session.exec(select(User.id, User.name)).all())
    wanted = None
    if labeler.strip():
        wanted = next((i for i, n in names.items() if n == labeler.strip()), None)
        if wanted is None:
            raise ValueError(f"no labeler named {labeler.strip()!r}")
    prompts: dict[int, str] = {}
    rows: list[tuple[SetRankings, int, float | None]] = []
    batches = _ranked_set_batches(session, wanted, version, flagged_only, disagreement_only)
    newest_first = (
        s for batch in batches for s in reversed(load_set_rankings(session=session, set_ids=batch))
    )
    for s in newest_first:
        flags = sum(len(r.flagged) for r in s.rankings)
        if flagged_only and not flags:
            continue
        agree = raw_agreement(s.rankings)
        if disagreement_only and not (agree is not None and agree < 1):
            continue
        rows.append((s, flags, agree))
        if len(rows) >= limit:
            break
    for p in session.exec(select(Prompt).where(col(Prompt.id).in_({s.prompt_id for s, _, _ in rows}))):
        prompts[p.id or 0] = last_user_turn(p.messages)
    return [
        RankedSetRow(
            s.set_id,
            prompts.get(s.prompt_id, ""),
            s.policy_version,
            s.origin,
            sum(not (r.skipped or r.none_acceptable) for r in s.rankings),
            ", ".join(
                sorted(
                    {
                        names.get(r.labeler, "?") if isinstance(r.labeler, int) else "imported"
                        for r in s.rankings
                    }
                )
            ),
            agree,
            flags,
            sum(r.none_acceptable for r in s.rankings),
            sum(r.skipped for r in s.rankings),
        )
        for s, flags, agree in rows
    ]


def _ranked_set_batches(
    session: Session, labeler: int | None, version: int | None, flagged: bool, several: bool
) -> Iterator[list[int]]:
    """The ids of ranked sets, newest first, a batch at a time: by `labeler` and of policy `version` when given,
    only sets with a flag (`flagged`) or with two or more rankings (`several`: those that can disagree)."""
    query = select(Ranking.set_id).distinct()
    if labeler is not None:
        query = query.where(Ranking.user_id == labeler)
    if flagged:
        flags_of = select(Ranking.set_id).where(cast(Ranking.flags, String) != "{}")
        query = query.where(col(Ranking.set_id).in_(flags_of))
    if several:
        ranked_twice = select(Ranking.set_id).group_by(col(Ranking.set_id)).having(func.count() >= 2)
        query = query.where(col(Ranking.set_id).in_(ranked_twice))
    if version is not None:
        query = (
            query.join(CompletionSet, col(CompletionSet.id) == col(Ranking.set_id))
            .join(PolicyVersion, col(PolicyVersion.id) == col(CompletionSet.policy_version_id))
            .where(PolicyVersion.version == version)
        )
    before: int | None = None
    while True:
        page = query if before is None else query.where(col(Ranking.set_id) < before)
        batch = list(session.exec(page.order_by(col(Ranking.set_id).desc()).limit(SCAN_BATCH)).all())
        if not batch:
            return
        yield batch
        before = batch[-1]


@dataclass(frozen=True)
class LabelRow:
    labeler: str
    order: str  # "2 > 1 = 4", by answer number
    flags: str
    none_acceptable: bool
    skipped: bool
    comment: str
    seconds: float | None
    at: datetime


@dataclass(frozen=True)
class EditDetail:
    """A labeler's edit among a set's answers: its answer number, who wrote it, the answer it rewrote (None:
    written from scratch), the seconds it took, and the word diff against that answer."""

    number: int
    author: str
    source: int | None
    seconds: float | None
    diff: list[tuple[str, str]]  # (`same` | `removed` | `added`, text), in order


@dataclass(frozen=True)
class RevisionDetail:
    """The model's revision among a set's answers: its answer number, the answer it rewrote, the principle it
    followed, its critique and the constitution version."""

    number: int
    source: int | None
    principle: str
    critique: str
    constitution: int | None


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """`new` against `old` word by word (whitespace kept with the words): runs of same, removed and added text."""
    a, b = re.split(r"(\s+)", old), re.split(r"(\s+)", new)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("removed", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("added", "".join(b[j1:j2])))
    return out


@dataclass
class SetDetail:
    set_id: int
    messages: list[dict]
    split: str
    version: int | None
    origin: str
    selection: dict | None
    answers: list[tuple[int, str, str]]  # (answer number, text, finish reason), in generation order
    labels: list[LabelRow] = field(default_factory=list)
    consensus: str = ""  # the merged order by answer number
    pairs: list[tuple[int, int, int, int, int, float]] = field(
        default_factory=list
    )  # (chosen, rejected, for, against, ties, agreement)
    edits: list[EditDetail] = field(default_factory=list)  # the answers labelers wrote, with their diffs
    revisions: list[RevisionDetail] = field(default_factory=list)  # the model's rewrites by a principle
    prompt_id: int | None = None


def order_text(ranks: dict[int, int], number: dict[int, int]) -> str:
    """Ranks (completion id -> rank) as "2 > 1 = 4" in answer numbers."""
    levels: dict[int, list[int]] = {}
    for cid, rank in ranks.items():
        levels.setdefault(rank, []).append(number[cid])
    return " > ".join(" = ".join(str(n) for n in sorted(levels[r])) for r in sorted(levels))


def set_detail(*, session: Session, set_id: int) -> SetDetail:
    """One set with its whole conversation, answers, every label (who, order, flags, comment, time), the
    consensus order and the pairs its votes make."""
    cset = session.get(CompletionSet, set_id)
    if cset is None:
        raise ValueError(f"no set {set_id} in the store")
    prompt = session.get(Prompt, cset.prompt_id)
    completions = session.exec(
        select(Completion).where(Completion.set_id == set_id).order_by(col(Completion.position))
    ).all()
    number = {c.id or 0: k + 1 for k, c in enumerate(completions)}
    version = session.get(PolicyVersion, cset.policy_version_id) if cset.policy_version_id else None
    names = dict(session.exec(select(User.id, User.name)).all())
    detail = SetDetail(
        set_id,
        prompt.messages if prompt else [],
        prompt.split if prompt else "",
        version.version if version else None,
        cset.origin,
        cset.selection,
        [(number[c.id or 0], c.text, c.finish_reason) for c in completions],
        prompt_id=prompt.id if prompt else None,
    )
    texts = {c.id: c.text for c in completions}
    detail.edits = [
        EditDetail(
            number[c.id or 0],
            names.get(c.author_id, "?") if c.author_id is not None else "?",
            number.get(c.source_id) if c.source_id is not None else None,
            c.edit_seconds,
            word_diff(texts.get(c.source_id, "") if c.source_id is not None else "", c.text),
        )
        for c in completions
        if c.origin == "edit"
    ]
    detail.revisions = [
        RevisionDetail(
            number[c.id or 0],
            number.get(c.source_id) if c.source_id is not None else None,
            str((c.detail or {}).get("principle", "")),
            str((c.detail or {}).get("critique", "")),
            (c.detail or {}).get("constitution"),
        )
        for c in completions
        if c.origin == "revision"
    ]
    for r in session.exec(select(Ranking).where(Ranking.set_id == set_id).order_by(col(Ranking.id))):
        detail.labels.append(
            LabelRow(
                names.get(r.user_id, "?") if r.user_id is not None else "imported",
                order_text({int(k): v for k, v in r.ranks.items()}, number),
                ", ".join(f"{number[int(k)]}: {v}" for k, v in r.flags.items()),
                r.none_acceptable,
                r.skipped,
                r.comment,
                r.seconds_spent,
                r.created_at,
            )
        )
    ranked: list[SetRankings] = load_set_rankings(session=session, set_ids=[set_id])
    if ranked:
        views = ranked[0].rankings
        detail.consensus = order_text(consensus_order(views), number) if views else ""
        detail.pairs = [
            (
                number[p.chosen],
                number[p.rejected],
                p.votes_for,
                p.votes_against,
                p.ties,
                round(p.agreement, 3),
            )
            for p in pair_votes(views, PairSettings(keep_ties=True))
        ]
    return detail
