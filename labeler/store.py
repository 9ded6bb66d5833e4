"""Typed store functions over a Session: prompts, completion sets, leasing, rankings, counts.

Every function takes a keyword-only `session` and commits its own unit of work, so a ranking is written whole
or not at all.

    with Session(engine) as session:
        leased = lease_next_set(session=session, user_id=me.id)
        submit_ranking(session=session, ranking=RankingIn(set_id=leased.set.id, user_id=me.id, ...))
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, case, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labeler.db import read_session
from labeler.tables import (
    FLAG_REASONS,
    Assignment,
    Completion,
    CompletionSet,
    PolicyVersion,
    Prompt,
    Ranking,
    as_utc,
    utcnow,
)

DEFAULT_LEASE_SECONDS = 15 * 60
MAX_COMMENT_CHARS = 2000
SHORTLIST = 8  # best waiting sets a lease reads before its write transaction claims the first still free


class StoreError(ValueError):
    """A request the store refuses; the message says what is wrong."""


class RankingRejected(StoreError):
    """A submitted ranking failed validation."""


class LeaseGone(RankingRejected):
    """The page's set is not (or no longer) this labeler's to submit: show them their current set instead."""


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
) -> int:
    """Add conversations as prompts (duplicates are skipped); a seeded `eval_fraction` goes to the eval split.

    Returns how many new prompts were written. One transaction: all or nothing.
    """
    rng = random.Random(seed)
    existing = set(session.exec(select(Prompt.content_hash)).all())
    added = 0
    for messages in conversations:
        digest = messages_hash(messages)
        if digest in existing:
            continue
        existing.add(digest)
        split = "eval" if rng.random() < eval_fraction else "train"
        session.add(Prompt(messages=list(messages), content_hash=digest, source=source, split=split))
        added += 1
    session.commit()
    return added


@dataclass(frozen=True)
class CompletionIn:
    text: str
    token_count: int = 0
    finish_reason: str = "eos"
    policy_version_id: int | None = None


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
    )
    session.add(cset)
    session.flush()
    rows = [
        Completion(
            set_id=cset.id,
            position=position,
            text=c.text,
            token_count=c.token_count,
            finish_reason=c.finish_reason,
            policy_version_id=c.policy_version_id if c.policy_version_id is not None else policy_version_id,
        )
        for position, c in enumerate(completions)
    ]
    session.add_all(rows)
    session.flush()
    if commit:
        session.commit()
    return cset, rows


@dataclass
class LeasedSet:
    """What a labeler is shown: the set, its prompt, and completions in this labeler's display order."""

    set: CompletionSet
    prompt: Prompt
    completions: list[Completion]
    assignment: Assignment


def labels_done(set_id_col=CompletionSet.id) -> object:
    """Correlated count of a set's non-skip rankings (the labels it has), for filters and ordering."""
    return (
        select(func.count(Ranking.id))
        .where(Ranking.set_id == set_id_col, col(Ranking.skipped).is_(False))
        .correlate(CompletionSet)
        .scalar_subquery()
    )


def _active_leases(set_id_col, now) -> object:
    return (
        select(func.count(Assignment.id))
        .where(
            Assignment.set_id == set_id_col,
            col(Assignment.completed_at).is_(None),
            Assignment.lease_expires_at > now,
        )
        .correlate(CompletionSet)
        .scalar_subquery()
    )


def had_by(user_id: int) -> object:
    """Correlated test: this labeler was ever given the set (a lease, finished or not)."""
    return (
        select(Assignment.id)
        .where(Assignment.set_id == CompletionSet.id, Assignment.user_id == user_id)
        .correlate(CompletionSet)
        .exists()
    )


def _current_version_id(session: Session) -> int | None:
    return session.exec(select(PolicyVersion.id).where(col(PolicyVersion.is_current).is_(True))).first()


def _load_leased(session: Session, assignment: Assignment) -> LeasedSet:
    cset = session.get(CompletionSet, assignment.set_id)
    assert cset is not None
    by_id = {c.id: c for c in session.exec(select(Completion).where(Completion.set_id == assignment.set_id))}
    prompt = session.get(Prompt, cset.prompt_id)
    assert prompt is not None
    return LeasedSet(
        set=cset,
        prompt=prompt,
        completions=[by_id[i] for i in assignment.display_order],
        assignment=assignment,
    )


def _has_room(session: Session, cset: CompletionSet, now) -> bool:
    """A fresh count (a new statement, so after the row lock) of the set's labels plus live leases, below k."""
    done, live = labels_done(CompletionSet.id), _active_leases(CompletionSet.id, now)
    query = select(CompletionSet.id).where(
        CompletionSet.id == cset.id, done + live < CompletionSet.labels_needed
    )
    return session.exec(query).first() is not None


def _candidates(session: Session, user_id: int, now, skip: Sequence[int] = (), *, lock: bool = True):
    """Sets this labeler may take, best first (see `lease_next_set`); with `lock`, row-locked on PostgreSQL."""
    done, live = labels_done(CompletionSet.id), _active_leases(CompletionSet.id, now)
    current = _current_version_id(session)
    is_current = case((CompletionSet.policy_version_id == current, 1), else_=0) if current else 0
    query = select(CompletionSet).where(
        CompletionSet.origin == "generated", ~had_by(user_id), done + live < CompletionSet.labels_needed
    )
    if skip:
        query = query.where(col(CompletionSet.id).not_in(skip))
    query = query.order_by(
        is_current.desc() if current else CompletionSet.id,
        col(CompletionSet.policy_version_id).desc(),
        done.desc(),
        CompletionSet.id,
    )
    # SQLite: no row locks (BEGIN IMMEDIATE serialises writers)
    return query.with_for_update(skip_locked=True, of=CompletionSet) if lock else query


def _claim(session: Session, user_id: int, set_id: int, now) -> CompletionSet | None:
    """The set, row-locked on PostgreSQL, if this labeler never had it and it still has room; else None."""
    query = (
        select(CompletionSet)
        .where(CompletionSet.id == set_id, ~had_by(user_id))
        .with_for_update(skip_locked=True, of=CompletionSet)
    )
    cset = session.exec(query).first()
    return cset if cset is not None and _has_room(session, cset, now) else None


@contextmanager
def _reading(session: Session) -> Iterator[Session]:
    """A read session next to `session`'s engine, so a scan runs before the write transaction (and, on SQLite,
    outside the one-writer turn). Reads through `session` itself when it is already in a transaction (a second
    connection could wait on the first) or when the store is in-memory SQLite (one shared connection)."""
    bind = session.get_bind()
    in_memory = bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:")
    if in_memory or session.in_transaction():
        yield session
        return
    with read_session(bind) as reader:
        yield reader


def _open_lease(session: Session, user_id: int, now) -> Assignment | None:
    return session.exec(
        select(Assignment).where(
            Assignment.user_id == user_id,
            col(Assignment.completed_at).is_(None),
            Assignment.lease_expires_at > now,
        )
    ).first()


def lease_next_set(
    *,
    session: Session,
    user_id: int,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    seed: int | None = None,
    guidelines_version: int | None = None,
    _retry: bool = True,
) -> LeasedSet | None:
    """Give `user_id` a set to rank, or None when nothing is waiting.

    A labeler's unexpired, unfinished lease is returned again (a page reload shows the same set). Otherwise the
    next set is one this labeler never had, whose rankings plus live leases are below its `labels_needed`.
    Order: sets of the current policy version first, then newer versions; among those, sets other labelers
    already started (so overlap completes and agreement can be measured), then oldest first. Expired leases
    stop counting, so their sets return to the pool.

    Two steps. A read transaction finds the open lease or a shortlist of the best sets (the scan over every
    waiting set, which held SQLite's one-writer turn for most of a lease before). The write transaction then
    claims the first shortlisted set that still qualifies, checked by id: on PostgreSQL its row is locked
    (`FOR UPDATE SKIP LOCKED`, so concurrent leases take different sets) and its labels are counted again
    after the lock, so a lease committed meanwhile is seen; on SQLite the write transaction holds the write
    lock from its start. Only when every shortlisted set was taken meanwhile does the write transaction scan
    again. The result is loaded before the commit: with `expire_on_commit=False` it needs no second
    transaction.
    """
    now = utcnow()
    with _reading(session) as reader:
        open_lease = _open_lease(reader, user_id, now)
        if open_lease is not None and open_lease.token is not None:
            return _load_leased(reader, open_lease)
        if open_lease is not None:  # leased before leases had tokens: issue one
            return _issue_token(session, open_lease.id)
        shortlist = [
            c.id for c in reader.exec(_candidates(reader, user_id, now, lock=False).limit(SHORTLIST))
        ]
    if not shortlist:
        return None
    cset = next((c for i in shortlist if (c := _claim(session, user_id, i, now)) is not None), None)
    full: list[int] = list(shortlist)
    while cset is None and (found := session.exec(_candidates(session, user_id, now, full).limit(1)).first()):
        cset = found if _has_room(session, found, now) else None
        full.append(found.id)  # filled by a lease that committed after this statement's snapshot
    if cset is None:
        session.rollback()
        return None
    ids = list(
        session.exec(select(Completion.id).where(Completion.set_id == cset.id).order_by(Completion.position))
    )
    random.Random(seed).shuffle(ids)
    assignment = Assignment(
        set_id=cset.id,
        user_id=user_id,
        display_order=ids,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        token=secrets.token_hex(16),
        guidelines_version=guidelines_version,
    )
    session.add(assignment)
    session.flush()
    leased = _load_leased(session, assignment)
    try:
        session.commit()
    except IntegrityError:  # the same labeler leased this set in another tab at the same moment
        session.rollback()
        if not _retry:
            raise
        return lease_next_set(
            session=session,
            user_id=user_id,
            lease_seconds=lease_seconds,
            seed=seed,
            guidelines_version=guidelines_version,
            _retry=False,
        )
    return leased


def _issue_token(session: Session, assignment_id: int | None) -> LeasedSet:
    assignment = session.get(Assignment, assignment_id)
    assert assignment is not None
    assignment.token = secrets.token_hex(16)
    session.add(assignment)
    session.flush()
    leased = _load_leased(session, assignment)
    session.commit()
    return leased


def lease_by_token(*, session: Session, user_id: int, token: str) -> Assignment:
    """The lease a page names by its token; refused unless it is this labeler's."""
    assignment = session.exec(select(Assignment).where(Assignment.token == token)).first()
    if assignment is None or assignment.user_id != user_id:
        raise LeaseGone("this page's set is not leased to you; reload the page for your current set")
    return assignment


def release_lease(*, session: Session, user_id: int, set_id: int) -> None:
    """Drop an unfinished lease at once (e.g. the labeler logged out), returning the slot to the pool."""
    assignment = session.exec(
        select(Assignment).where(Assignment.user_id == user_id, Assignment.set_id == set_id)
    ).first()
    if assignment is not None and assignment.completed_at is None:
        assignment.lease_expires_at = utcnow()
        session.add(assignment)
    session.commit()


@dataclass
class RankingIn:
    """A labeler's submission. `ranks`: completion id -> rank (1 = best; equal = tie); `flags`: id -> reason."""

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


def validate_ranking(ranking: RankingIn, completion_ids: Sequence[int]) -> None:
    """Raise RankingRejected saying exactly what is missing or wrong.

    Rules: a skip carries nothing else; no answer is both ranked and flagged; ranks run from 1 to N (equal ranks
    are ties); 'none acceptable' carries no ranks (flags may say why); otherwise a labeler's ranking covers every
    answer, each ranked or flagged, with at least two ranked (partial rankings are refused, not stored)."""
    known, n = set(completion_ids), len(completion_ids)
    unknown = (set(ranking.ranks) | set(ranking.flags)) - known
    if unknown:
        raise RankingRejected(f"completions {sorted(unknown)} are not in set {ranking.set_id}")
    if len(ranking.comment) > MAX_COMMENT_CHARS:
        raise RankingRejected(
            f"the comment has {len(ranking.comment)} characters; at most {MAX_COMMENT_CHARS} are kept"
        )
    if ranking.skipped:
        if ranking.ranks or ranking.flags or ranking.none_acceptable:
            raise RankingRejected("a skip carries no ranks, flags or 'none acceptable'")
        return
    both = set(ranking.ranks) & set(ranking.flags)
    if both:
        raise RankingRejected(f"completions {sorted(both)} are both ranked and flagged: choose one")
    bad_reason = {cid: r for cid, r in ranking.flags.items() if r not in FLAG_REASONS}
    if bad_reason:
        raise RankingRejected(f"unknown flag reason(s) {bad_reason}; use one of {', '.join(FLAG_REASONS)}")
    out_of_range = {cid: r for cid, r in ranking.ranks.items() if not (isinstance(r, int) and 1 <= r <= n)}
    if out_of_range:
        raise RankingRejected(f"ranks must be whole numbers from 1 to {n}; got {out_of_range}")
    if ranking.none_acceptable:
        if ranking.ranks:
            raise RankingRejected("'none acceptable' means no answer is ranked: clear the ranks or untick it")
        return
    if len(ranking.ranks) < 2:
        raise RankingRejected(
            f"rank at least two unflagged completions (ranked {len(ranking.ranks)}), or mark 'none acceptable'"
        )
    if ranking.user_id is not None and len(ranking.ranks) + len(ranking.flags) < n:
        left = [i + 1 for i, cid in enumerate(completion_ids) if cid not in ranking.ranks | ranking.flags]
        raise RankingRejected(
            f"answer(s) {', '.join(map(str, left))} are neither ranked nor flagged: rank or flag every answer"
        )


def _same_submission(row: Ranking, ranking: RankingIn) -> bool:
    return row.submission_id == ranking.submission_id or (
        row.ranks == {str(k): v for k, v in ranking.ranks.items()}
        and row.flags == {str(k): v for k, v in ranking.flags.items()}
        and row.none_acceptable == ranking.none_acceptable
        and row.skipped == ranking.skipped
    )


def _existing(session: Session, ranking: RankingIn) -> Ranking | None:
    same_labeler = and_(Ranking.set_id == ranking.set_id, Ranking.user_id == ranking.user_id)
    match = Ranking.submission_id == ranking.submission_id
    if ranking.user_id is not None:
        match = or_(match, same_labeler)
    return session.exec(select(Ranking).where(match)).first()


def submit_ranking(*, session: Session, ranking: RankingIn) -> Ranking:
    """Validate and store a ranking, closing the labeler's assignment, in one transaction.

    Idempotent: the same submission arriving twice (same submission id, or identical content for the same set
    and labeler) returns the stored row and writes nothing. A different second ranking of the same set by the
    same labeler is refused.
    """
    completion_ids = list(session.exec(select(Completion.id).where(Completion.set_id == ranking.set_id)))
    if not completion_ids:
        raise RankingRejected(f"set {ranking.set_id} does not exist")
    assignment_id = None
    if ranking.user_id is not None:
        lease = session.exec(
            select(Assignment).where(
                Assignment.set_id == ranking.set_id, Assignment.user_id == ranking.user_id
            )
        ).first()
        if lease is None:
            raise RankingRejected(f"set {ranking.set_id} was never assigned to this labeler")
        assignment_id = lease.id
        if sorted(lease.display_order) == sorted(completion_ids):
            completion_ids = list(lease.display_order)  # messages name answers as this labeler saw them
        validate_ranking(ranking, completion_ids)
        if lease.completed_at is None and not ranking.skipped and as_utc(lease.lease_expires_at) <= utcnow():
            _refuse_if_filled_meanwhile(session, ranking.set_id)
    else:
        validate_ranking(ranking, completion_ids)
    row = Ranking(
        set_id=ranking.set_id,
        user_id=ranking.user_id,
        submission_id=ranking.submission_id,
        ranks={str(k): v for k, v in ranking.ranks.items()},
        flags={str(k): v for k, v in ranking.flags.items()},
        none_acceptable=ranking.none_acceptable,
        skipped=ranking.skipped,
        comment=ranking.comment.strip(),
        seconds_spent=ranking.seconds_spent,
        guidelines_version=ranking.guidelines_version,
    )
    session.add(row)
    if assignment_id is not None:
        table = Assignment.__table__  # core update: no ORM bookkeeping on the labelers' hot path
        session.connection().execute(
            update(table).where(table.c.id == assignment_id).values(completed_at=utcnow())
        )
    try:
        session.commit()
    except IntegrityError:
        # The unique constraints (submission id; set + labeler) catch repeats without a lookup on the hot path.
        session.rollback()
        return _resolve_repeat(session, ranking)
    return row


def _refuse_if_filled_meanwhile(session: Session, set_id: int) -> None:
    """A submit after its lease expired counts as a label if the set still has room (its labels plus other
    labelers' live leases below k); otherwise others filled it meanwhile and it is refused, nothing stored."""
    cset = session.get(CompletionSet, set_id)
    assert cset is not None
    if not _has_room(session, cset, utcnow()):
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


def submit_leased(*, session: Session, lease: Assignment, choices: PageChoices) -> Ranking:
    """Store a labeler's choices for a set leased to them (`lease_by_token` checks whose it is). The set, the
    order its answers were shown in, the time it was shown (so the seconds spent) and the guidelines version
    come from the lease record; the submission id is `lease:<token>`, so a repeat of a submit is stored once."""
    order = lease.display_order
    beyond = [*choices.ranks[len(order) :], *choices.flags[len(order) :]]
    if any(value is not None for value in beyond):
        raise RankingRejected(f"this set has {len(order)} answers; the page sent choices for more")
    ranking = RankingIn(
        set_id=lease.set_id,
        user_id=lease.user_id,
        submission_id=f"lease:{lease.token}",
        ranks={cid: r for cid, r in zip(order, choices.ranks, strict=False) if r is not None},
        flags={cid: f for cid, f in zip(order, choices.flags, strict=False) if f},
        none_acceptable=choices.none_acceptable,
        skipped=choices.skipped,
        comment=choices.comment,
        seconds_spent=round((utcnow() - as_utc(lease.leased_at)).total_seconds(), 2),
        guidelines_version=lease.guidelines_version,
    )
    return submit_ranking(session=session, ranking=ranking)


def _resolve_repeat(session: Session, ranking: RankingIn) -> Ranking:
    # A read: it must not leave the caller's session holding a write transaction.
    with _reading(session) as reader:
        existing = _existing(reader, ranking)
        if existing is not None:
            reader.expunge(existing)
    if session.in_transaction():
        session.rollback()
    if existing is None:
        raise RankingRejected(f"set {ranking.set_id} could not be stored (constraint violation); try again")
    if (
        existing.set_id == ranking.set_id
        and existing.user_id == ranking.user_id
        and _same_submission(existing, ranking)
    ):
        return existing
    if existing.user_id != ranking.user_id:
        raise RankingRejected("this submission id belongs to another ranking; nothing was stored")
    raise RankingRejected(f"set {ranking.set_id} was already ranked by this labeler")
