"""Typed store functions over a Session: prompts, completion sets and rankings (leasing is `labeler/store/leasing.py`).

Every function takes a keyword-only `session` and commits its own unit of work, so a ranking is written whole
or not at all.

    with Session(engine) as session:
        leased = lease_next_set(session=session, user_id=me.id)          # labeler.store.leasing
        submit_ranking(session=session, ranking=RankingIn(set_id=leased.set.id, user_id=me.id, ...))
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labeler.store.edits import (
    MAX_EDIT_CHARS,
    EditIn,
    dense,
    merged_ranks,
    same_edits,
    stored_edits,
    validate_edits,
    write_edits,
)
from labeler.store.errors import LeaseGone, RankingRejected, StoreError
from labeler.store.leasing import has_room, reading
from labeler.store.tables import (
    FLAG_REASONS,
    Assignment,
    Completion,
    CompletionSet,
    Prompt,
    Ranking,
    as_utc,
    id_of,
    table_of,
    utcnow,
)

__all__ = [
    "MAX_EDIT_CHARS",
    "EditIn",
    "LeaseGone",
    "RankingRejected",
    "StoreError",
]  # what callers use with it

MAX_COMMENT_CHARS = 2000


def last_user_message(messages: Sequence[dict]) -> str:
    """A conversation's last user message (what a critique quotes, a judge is shown, a turn says); "" if none."""
    said = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    return said[-1] if said else ""


def messages_hash(messages: Sequence[dict]) -> str:
    """Stable identity of a conversation, used to de-duplicate prompts."""
    return hashlib.sha256(json.dumps(list(messages), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def get_or_add_prompt(
    *, session: Session, messages: list[dict], source: str = "", split: str = "train"
) -> Prompt:
    """The existing prompt with these messages, or a new one (not committed)."""
    digest = messages_hash(messages)
    found = session.exec(select(Prompt).where(Prompt.content_hash == digest)).first()
    if found is not None:
        return found
    prompt = Prompt(messages=messages, content_hash=digest, source=source, split=split)
    session.add(prompt)
    session.flush()
    return prompt


def add_prompts(
    *,
    session: Session,
    conversations: Iterable[list[dict]],
    source: str = "",
    eval_fraction: float = 0.0,
    seed: int = 0,
    follow_ups: Sequence[list | None] | None = None,
) -> int:
    """Add conversations as prompts (duplicates are skipped); a seeded `eval_fraction` goes to the eval split.
    `follow_ups`: each conversation's imported next user messages (labeler/labels/conversations.py), or None.

    Returns how many new prompts were written. One transaction: all or nothing.
    """
    rng = random.Random(seed)
    existing = set(session.exec(select(Prompt.content_hash)).all())
    added = 0
    listed = list(follow_ups) if follow_ups is not None else None
    for k, messages in enumerate(conversations):
        digest = messages_hash(messages)
        if digest in existing:
            continue
        existing.add(digest)
        split = "eval" if rng.random() < eval_fraction else "train"
        more = listed[k] if listed is not None else None
        session.add(
            Prompt(messages=list(messages), content_hash=digest, source=source, split=split, follow_ups=more)
        )
        added += 1
    session.commit()
    return added


def prompt_ids(*, session: Session, conversations: Iterable[Sequence[dict]]) -> dict[str, int]:
    """Content hash -> prompt id for those of `conversations` that the store holds."""
    hashes = [messages_hash(c) for c in conversations]
    rows = session.exec(select(Prompt.content_hash, Prompt.id).where(col(Prompt.content_hash).in_(hashes)))
    return {digest: prompt_id for digest, prompt_id in rows.all() if prompt_id is not None}


def has_prompts(*, session: Session) -> bool:
    return session.exec(select(Prompt.id)).first() is not None


@dataclass(frozen=True)
class CompletionIn:
    text: str
    token_count: int = 0
    finish_reason: str = "eos"
    policy_version_id: int | None = None
    origin: str = "generated"  # or `revision`: the policy's rewrite of the set's answer at `source_position`
    source_position: int | None = None
    detail: dict | None = None  # a revision's principle, critique and constitution version


def add_completion_set(
    *,
    session: Session,
    prompt_id: int,
    completions: Sequence[CompletionIn],
    policy_version_id: int | None,
    sampling: dict | None = None,
    labels_needed: int = 1,
    generation_seconds: float | None = None,
    origin: str = "generated",
    source: str = "",
    selection: dict | None = None,
    commit: bool = True,
) -> tuple[CompletionSet, list[Completion]]:
    """Write one set with its completions (in generation order); `commit=False` leaves the transaction open."""
    if len(completions) < 2:
        raise StoreError(f"a completion set needs at least 2 completions, got {len(completions)}")
    cset = CompletionSet(
        prompt_id=prompt_id,
        policy_version_id=policy_version_id,
        origin=origin,
        source=source,
        sampling=sampling or {},
        labels_needed=labels_needed,
        generation_seconds=generation_seconds,
        selection=selection,
    )
    session.add(cset)
    session.flush()
    rows = [
        Completion(
            set_id=id_of(cset),
            position=position,
            text=c.text,
            token_count=c.token_count,
            finish_reason=c.finish_reason,
            policy_version_id=c.policy_version_id if c.policy_version_id is not None else policy_version_id,
            origin=c.origin,
            detail=c.detail,
        )
        for position, c in enumerate(completions)
    ]
    session.add_all(rows)
    session.flush()
    for row, c in zip(rows, completions, strict=True):  # a revision points at the answer it rewrote
        if c.source_position is not None:
            row.source_id = id_of(rows[c.source_position])
    if any(c.source_position is not None for c in completions):
        session.flush()
    if commit:
        session.commit()
    return cset, rows


@dataclass
class RankingIn:
    """A labeler's submission. `ranks`: completion id -> rank (1 = best; equal = tie); `flags`: id -> reason;
    `edits`: answers the labeler rewrote or wrote (stored with the ranking, in its transaction)."""

    set_id: int
    user_id: int | None
    submission_id: str
    ranks: dict[int, int] = field(default_factory=dict)
    flags: dict[int, str] = field(default_factory=dict)
    none_acceptable: bool = False
    skipped: bool = False
    comment: str = ""
    seconds_spent: float | None = None
    guidelines_version: int | None = None
    edits: list[EditIn] = field(default_factory=list)
    follow_up: str = ""  # the next user message, to continue the conversation from the chosen answer

    @property
    def next_message(self) -> str | None:
        return self.follow_up.strip() or None


def validate_ranking(ranking: RankingIn, completion_ids: Sequence[int]) -> None:
    """Raise RankingRejected saying exactly what is missing or wrong.

    Rules: a skip carries nothing else; no answer is both ranked and flagged; ranks run from 1 to N (equal ranks
    are ties); 'none acceptable' carries no ranks (flags may say why); otherwise a labeler's ranking covers every
    answer, each ranked or flagged, with at least two ranked (partial rankings are refused, not stored)."""
    known, n = set(completion_ids), len(completion_ids)
    unknown = (set(ranking.ranks) | set(ranking.flags)) - known
    if unknown:
        raise RankingRejected(f"answers {sorted(unknown)} are not in set {ranking.set_id}")
    if len(ranking.comment) > MAX_COMMENT_CHARS:
        raise RankingRejected(
            f"the comment has {len(ranking.comment)} characters; at most {MAX_COMMENT_CHARS} are kept"
        )
    if len(ranking.follow_up) > MAX_COMMENT_CHARS:
        raise RankingRejected(
            f"the next message has {len(ranking.follow_up)} characters; at most {MAX_COMMENT_CHARS} are kept"
        )
    if ranking.skipped:
        if ranking.ranks or ranking.flags or ranking.none_acceptable or ranking.edits or ranking.next_message:
            raise RankingRejected("a skip carries no ranks, flags, edits, next message or 'none acceptable'")
        return
    both = set(ranking.ranks) & set(ranking.flags)
    if both:
        raise RankingRejected(f"answers {sorted(both)} are both ranked and flagged: choose one")
    bad_reason = {cid: r for cid, r in ranking.flags.items() if r not in FLAG_REASONS}
    if bad_reason:
        raise RankingRejected(f"unknown flag reason(s) {bad_reason}; use one of {', '.join(FLAG_REASONS)}")
    out_of_range = {cid: r for cid, r in ranking.ranks.items() if not (isinstance(r, int) and 1 <= r <= n)}
    if out_of_range:
        raise RankingRejected(f"ranks must be whole numbers from 1 to {n}; got {out_of_range}")
    validate_edits(
        ranking.edits, set_id=ranking.set_id, none_acceptable=ranking.none_acceptable, shown=completion_ids
    )
    if ranking.none_acceptable:
        if ranking.ranks:
            raise RankingRejected("'none acceptable' means no answer is ranked: clear the ranks or untick it")
        return
    if len(ranking.ranks) < 2:
        raise RankingRejected(
            f"rank at least two unflagged answers (ranked {len(ranking.ranks)}), or mark 'none acceptable'"
        )
    if ranking.user_id is not None and len(ranking.ranks) + len(ranking.flags) < n:
        left = [i + 1 for i, cid in enumerate(completion_ids) if cid not in ranking.ranks | ranking.flags]
        raise RankingRejected(
            f"answer(s) {', '.join(map(str, left))} are neither ranked nor flagged: rank or flag every answer"
        )


def _same_content(row: Ranking, ranking: RankingIn) -> bool:
    """Whether a stored ranking holds exactly the choices of `ranking` (ranks, flags, none acceptable, skipped,
    comment): only then is a second submit the harmless repeat of the first."""
    shown = {str(k) for k in (*ranking.ranks, *ranking.flags)} | {
        str(e.source_id) for e in ranking.edits if e.source_id is not None
    }
    answers = {int(k): v for k, v in row.ranks.items() if k in shown} if ranking.edits else None
    return (
        (
            row.ranks == {str(k): v for k, v in ranking.ranks.items()}
            if answers is None
            else dense(answers) == dense(ranking.ranks)
        )
        and row.flags == {str(k): v for k, v in ranking.flags.items()}
        and row.none_acceptable == ranking.none_acceptable
        and row.skipped == ranking.skipped
        and row.comment == ranking.comment.strip()
        and row.follow_up == ranking.next_message
    )


def _existing(session: Session, ranking: RankingIn) -> Ranking | None:
    same_labeler = and_(col(Ranking.set_id) == ranking.set_id, col(Ranking.user_id) == ranking.user_id)
    match = col(Ranking.submission_id) == ranking.submission_id
    if ranking.user_id is not None:
        match = or_(match, same_labeler)
    return session.exec(select(Ranking).where(match)).first()


def _labelers_lease(session: Session, ranking: RankingIn) -> Assignment:
    lease = session.exec(
        select(Assignment).where(Assignment.set_id == ranking.set_id, Assignment.user_id == ranking.user_id)
    ).first()
    if lease is None:
        raise RankingRejected(f"set {ranking.set_id} was never assigned to this labeler")
    return lease


def _answer_ids(session: Session, ranking: RankingIn, lease: Assignment | None) -> list[int]:
    """The set's completion ids; for a labeler, in the order they were shown (messages number them so)."""
    if lease is not None and lease.display_order:
        return list(lease.display_order)
    ids = [
        i
        for i in session.exec(select(Completion.id).where(Completion.set_id == ranking.set_id))
        if i is not None
    ]
    if not ids:
        raise RankingRejected(f"set {ranking.set_id} does not exist")
    return ids


def submit_ranking(*, session: Session, ranking: RankingIn, lease: Assignment | None = None) -> Ranking:
    """Validate and store a ranking, closing the labeler's assignment, in one transaction. `lease`: the
    labeler's lease on the set, when the caller has read it already (a page's submit).

    Idempotent: the same choices arriving twice for the same set and labeler (whatever their submission ids)
    return the stored row and write nothing. Different choices a second time are refused, nothing stored, even
    under the same submission id (two tabs on one lease): the labeler is told to undo the first.
    """
    if ranking.user_id is not None:
        lease = lease if lease is not None else _labelers_lease(session, ranking)
        if (lease.set_id, lease.user_id) != (ranking.set_id, ranking.user_id):
            raise RankingRejected(f"set {ranking.set_id} was never assigned to this labeler")
    shown = _answer_ids(session, ranking, lease)
    validate_ranking(ranking, shown)
    if (
        lease is not None
        and lease.completed_at is None
        and not ranking.skipped
        and as_utc(lease.lease_expires_at) <= utcnow()
    ):
        _refuse_if_filled_meanwhile(session, ranking.set_id)
    edits = write_edits(
        session, set_id=ranking.set_id, author_id=ranking.user_id, edits=ranking.edits, shown=shown
    )
    ranks = (
        merged_ranks(
            ranking.ranks, ranking.flags, none_acceptable=ranking.none_acceptable, edits=edits, shown=shown
        )
        if edits
        else ranking.ranks
    )
    row = Ranking(
        set_id=ranking.set_id,
        user_id=ranking.user_id,
        submission_id=ranking.submission_id,
        ranks={str(k): v for k, v in ranks.items()},
        flags={str(k): v for k, v in ranking.flags.items()},
        none_acceptable=ranking.none_acceptable,
        skipped=ranking.skipped,
        comment=ranking.comment.strip(),
        follow_up=ranking.next_message,
        seconds_spent=ranking.seconds_spent,
        guidelines_version=ranking.guidelines_version,
    )
    session.add(row)
    if lease is not None:
        table = table_of(Assignment)  # core update: no ORM bookkeeping on the labelers' hot path
        session.connection().execute(
            update(table).where(table.c.id == lease.id).values(completed_at=utcnow())
        )
    if not ranking.skipped:
        count_label(session, ranking.set_id)
    try:
        session.commit()
    except IntegrityError:
        # The unique constraints (submission id; set + labeler) catch repeats without a lookup on the hot path.
        session.rollback()
        return _resolve_repeat(session, ranking)
    return row


def count_label(session: Session, set_id: int) -> None:
    """One more label on the set's count (`CompletionSet.labels_done`), in the transaction that adds the ranking
    it counts: both are stored or neither."""
    table = table_of(CompletionSet)
    session.connection().execute(
        update(table).where(table.c.id == set_id).values(labels_done=table.c.labels_done + 1)
    )


def _refuse_if_filled_meanwhile(session: Session, set_id: int) -> None:
    """A submit after its lease expired counts as a label if the set still has room (its labels plus other
    labelers' live leases below k); otherwise others filled it meanwhile and it is refused, nothing stored.
    Gold sets never fill (`has_room`)."""
    if not has_room(session, set_id, utcnow()):
        raise LeaseGone(
            "your lease on this set expired and other labelers have since given it all the labels it needs, "
            "so this ranking was not stored; here is your next set"
        )


@dataclass
class PageChoices:
    """What a labeler's page sends for the set it shows, by display position: nothing that names the set."""

    ranks: list[int | None]
    flags: list[str | None]
    none_acceptable: bool = False
    comment: str = ""
    skipped: bool = False
    edits: list[str | None] = field(default_factory=list)  # the labeler's rewrite of each answer, or None
    edit_seconds: list[float | None] = field(default_factory=list)  # the time each rewrite took
    written: str | None = None  # an answer written from scratch
    written_seconds: float | None = None
    follow_up: str = ""  # the next user message, where the conversation may continue


def submit_leased(*, session: Session, lease: Assignment, choices: PageChoices) -> Ranking:
    """Store a labeler's choices for a set leased to them (`lease_by_token` checks whose it is). The set, the
    order its answers were shown in, the time it was shown (so the seconds spent) and the guidelines version
    come from the lease record; the submission id is `lease:<token>`, so a repeat of a submit is stored once."""
    order = lease.display_order
    beyond = [*choices.ranks[len(order) :], *choices.flags[len(order) :], *choices.edits[len(order) :]]
    if any(value is not None for value in beyond):
        raise RankingRejected(f"this set has {len(order)} answers; the page sent choices for more")
    seconds = [*choices.edit_seconds, *[None] * (len(order) - len(choices.edit_seconds))]
    edits = [
        EditIn(text=text, source_id=cid, seconds=spent)
        for cid, text, spent in zip(order, choices.edits, seconds, strict=False)
        if text is not None
    ]
    if choices.written is not None:
        edits.append(EditIn(text=choices.written, seconds=choices.written_seconds))
    ranking = RankingIn(
        set_id=lease.set_id,
        user_id=lease.user_id,
        submission_id=f"lease:{lease.token}",
        ranks={cid: r for cid, r in zip(order, choices.ranks, strict=False) if r is not None},
        flags={cid: f for cid, f in zip(order, choices.flags, strict=False) if f},
        none_acceptable=choices.none_acceptable,
        skipped=choices.skipped,
        comment=choices.comment,
        follow_up=choices.follow_up,
        seconds_spent=round((utcnow() - as_utc(lease.leased_at)).total_seconds(), 2),
        guidelines_version=lease.guidelines_version,
        edits=edits,
    )
    return submit_ranking(session=session, ranking=ranking, lease=lease)


def _resolve_repeat(session: Session, ranking: RankingIn) -> Ranking:
    # A read: it must not leave the caller's session holding a write transaction.
    with reading(session) as reader:
        existing = _existing(reader, ranking)
        edits_agree = (
            existing is None
            or not ranking.edits
            or same_edits(stored_edits(reader, existing.ranks), ranking.edits)
        )
        if existing is not None:
            reader.expunge(existing)
    if session.in_transaction():
        session.rollback()
    if existing is None:
        raise RankingRejected(f"set {ranking.set_id} could not be stored (constraint violation); try again")
    if (existing.set_id, existing.user_id) != (ranking.set_id, ranking.user_id):
        raise RankingRejected("this submission id belongs to another ranking; nothing was stored")
    if _same_content(existing, ranking) and edits_agree:
        return existing  # the same submit again (a retry, a double click): stored once
    raise RankingRejected(
        "this set was already ranked by you with different choices (in another tab, or by an earlier submit), "
        'so these were not stored; to change your ranking, use "Undo last submit" and rank the set again'
    )
