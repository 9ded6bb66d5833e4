"""Leasing: which set a labeler ranks next, held for them under a token for 15 minutes.

    with Session(engine, expire_on_commit=False) as session:
        leased = lease_next_set(session=session, user_id=me.id)      # LeasedSet, or None when nothing waits
        lease = lease_by_token(session=session, user_id=me.id, token=leased.assignment.token)

Rules: a labeler never gets a set twice; a set is never leased past its `labels_needed` (its labels plus live
leases); the current policy's sets come first, then newer versions, then sets others started (so overlap
completes and agreement can be measured), then the oldest. Expired leases stop counting. With a gold rate set
(labeler/labels/gold.py), that share of leases gives a gold set the labeler never had instead, while other work waits.
With suggestions on (labeler/store/suggestions.py), a lease of a set the suggesting judge ranked records the judge's
ranking, shown on the page on the chosen share of leases and held back on the rest. With conversations on, the
current policy's later turns come first (or last) as the admin prefers.

A lease runs on every submit, so it reads few rows: each set counts its labels (`CompletionSet.labels_done`,
kept by the store), and a partial index holds only the sets still open, in the order above; the shortlist walks
it and stops after a few rows instead of counting every set's rankings (on PostgreSQL that scan took 35-100 ms
per lease under load). The statements are built once, with bound parameters (`:user_id`, `:now`, `:set_id`):
building these correlated queries anew cost more of the server's time than running them.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, case, func, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labeler.store.db import read_session
from labeler.store.errors import LeaseGone
from labeler.store.settings import gold_rate
from labeler.store.suggestions import suggestion_for, suggestion_plan
from labeler.store.tables import Assignment, Completion, CompletionSet, PolicyVersion, Prompt, utcnow

DEFAULT_LEASE_SECONDS = 15 * 60
SHORTLIST = 8  # best waiting sets a lease reads before its write transaction claims the first still free
_USER: BindParameter[int] = bindparam("user_id")
_NOW: BindParameter[datetime] = bindparam("now")
_SET: BindParameter[int] = bindparam("set_id")


def active_leases(set_id_col: Any, now: datetime | Any) -> Any:
    """Correlated count of a set's unfinished, unexpired leases at `now`."""
    return (
        select(func.count(col(Assignment.id)))
        .where(
            Assignment.set_id == set_id_col,
            col(Assignment.completed_at).is_(None),
            col(Assignment.lease_expires_at) > now,
        )
        .correlate(CompletionSet)
        .scalar_subquery()
    )


def had_by(user_id: int | Any) -> ColumnElement[bool]:
    """Correlated test: this labeler was ever given the set (a lease, finished or not)."""
    return (
        select(Assignment.id)
        .where(Assignment.set_id == CompletionSet.id, Assignment.user_id == user_id)
        .correlate(CompletionSet)
        .exists()
    )


def _room_left(now: datetime | Any) -> ColumnElement[bool]:
    """Labels plus live leases below k. The first term is the open-sets index's predicate (labeler/store/tables.py),
    so the scan reads that index only; the lease count runs for the rows it keeps."""
    done, needed = col(CompletionSet.labels_done), col(CompletionSet.labels_needed)
    return and_(done < needed, done + active_leases(CompletionSet.id, now) < needed)


_OPEN_ORDER: list[Any] = [
    col(CompletionSet.policy_version_id).desc(),
    col(CompletionSet.labels_done).desc(),
    CompletionSet.id,
]


def _best_first(current: Any) -> list[Any]:
    is_current = case((CompletionSet.policy_version_id == current, 1), else_=0)
    return [is_current.desc(), *_OPEN_ORDER]


_CURRENT = select(PolicyVersion.id).where(col(PolicyVersion.is_current).is_(True)).limit(1).scalar_subquery()
_OPEN_LEASE = select(Assignment).where(
    Assignment.user_id == _USER,
    col(Assignment.completed_at).is_(None),
    col(Assignment.lease_expires_at) > _NOW,
)


def _takeable(*where: ColumnElement[bool]) -> Any:
    """Ids of the best `SHORTLIST` sets this labeler may take among those matching `where`, in the open-sets
    index's order, so the scan stops after a few rows."""
    return (
        select(CompletionSet.id)
        .where(CompletionSet.origin == "generated", ~had_by(_USER), _room_left(_NOW), *where)
        .order_by(*_OPEN_ORDER)
        .limit(SHORTLIST)
    )


_SHORTLIST_CURRENT = _takeable(col(CompletionSet.policy_version_id) == _CURRENT)
_TURN = select(Prompt.turn).where(Prompt.id == CompletionSet.prompt_id).scalar_subquery()
# conversations on: the current version's later turns (or first turns) before the rest
_SHORTLIST_TURNS = {
    True: _takeable(col(CompletionSet.policy_version_id) == _CURRENT, _TURN > 1),
    False: _takeable(col(CompletionSet.policy_version_id) == _CURRENT, _TURN == 1),
}
_SHORTLIST_OTHERS = _takeable(  # a NULL version counts as not current even when no version is current
    or_(
        col(CompletionSet.policy_version_id).is_(None),
        col(CompletionSet.policy_version_id) != func.coalesce(_CURRENT, -1),
    )
)
# PostgreSQL locks the claimed row (SKIP LOCKED: concurrent leases take different sets); SQLite ignores it, as
# its write transaction already holds the database's one write lock.
_CLAIM = (
    select(CompletionSet.id)
    .where(CompletionSet.id == _SET, ~had_by(_USER))
    .with_for_update(skip_locked=True, of=CompletionSet)
)
# a gold set never fills: every labeler may rank it once (labeler/labels/gold.py)
_HAS_ROOM = select(CompletionSet.id).where(
    CompletionSet.id == _SET, or_(col(CompletionSet.origin) == "gold", _room_left(_NOW))
)
# a labeler's edit is theirs alone: other labelers rank the answers the set was made with
_DISPLAY_IDS = (
    select(Completion.id)
    .where(Completion.set_id == _SET, col(Completion.origin) != "edit")
    .order_by(col(Completion.position))
)
_BY_TOKEN = select(Assignment).where(Assignment.token == bindparam("token"))


def _shortlist(reader: Session, params: dict, later_turns_first: bool | None = None) -> list[int]:
    """Ids of the best sets to try, best first: the current policy's, then (only when those are too few) the
    other versions' sets, newest version first. With `later_turns_first` (conversations on) the current
    policy's later turns come before its first turns (True: finish conversations) or after them (False)."""
    connection = reader.connection()
    ids: list[int] = []
    if later_turns_first is not None:
        ids += connection.execute(_SHORTLIST_TURNS[later_turns_first], params).scalars()
    if len(ids) < SHORTLIST:
        ids += (i for i in connection.execute(_SHORTLIST_CURRENT, params).scalars() if i not in ids)
    if len(ids) < SHORTLIST:
        ids += connection.execute(_SHORTLIST_OTHERS, params).scalars()
    return ids[:SHORTLIST]


@dataclass
class LeasedSet:
    """What a labeler is shown: the set, its prompt, and completions in this labeler's display order."""

    set: CompletionSet
    prompt: Prompt
    completions: list[Completion]
    assignment: Assignment


def load_leased(session: Session, assignment: Assignment) -> LeasedSet:
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


def has_room(session: Session, set_id: int, now: datetime) -> bool:
    """A fresh count (a new statement, so after a row lock) of the set's labels plus live leases, below k; a
    gold set always has room."""
    return session.connection().execute(_HAS_ROOM, {"set_id": set_id, "now": now}).first() is not None


def _candidates(session: Session, user_id: int, now: datetime, skip: Sequence[int]) -> Any:
    """Sets this labeler may take, best first, leaving out `skip`; row-locked on PostgreSQL. For the rare
    rescan when every shortlisted set was taken meanwhile."""
    query = select(CompletionSet).where(
        CompletionSet.origin == "generated",
        ~had_by(user_id),
        _room_left(now),
        col(CompletionSet.id).not_in(skip),
    )
    return query.order_by(*_best_first(_CURRENT)).with_for_update(skip_locked=True, of=CompletionSet)


def _claim(session: Session, user_id: int, set_id: int, now: datetime) -> int | None:
    """The set's id, row-locked on PostgreSQL, if this labeler never had it and it still has room; else None."""
    claimed = session.connection().execute(_CLAIM, {"set_id": set_id, "user_id": user_id}).first()
    return set_id if claimed is not None and has_room(session, set_id, now) else None


_GOLD_FOR = (
    select(CompletionSet.id)
    .where(CompletionSet.origin == "gold", ~had_by(_USER))
    .order_by(col(CompletionSet.labels_done), col(CompletionSet.id))
    .limit(SHORTLIST)
)


def _gold_draw(reader: Session, user_id: int, seed: int | None) -> int | None:
    """With probability `gold_rate` (a setting), one of the gold sets this labeler never had, the least
    labeled first; None otherwise. Gold sets mix into real work only: none is offered when nothing else waits."""
    rate = gold_rate(session=reader)
    rng = random.Random(None if seed is None else seed ^ 0x9E3779B9)
    if rate <= 0 or rng.random() >= rate:
        return None
    ids = list(reader.connection().execute(_GOLD_FOR, {"user_id": user_id}).scalars())
    return rng.choice(ids) if ids else None


@contextmanager
def reading(session: Session) -> Iterator[Session]:
    """A read session next to `session`'s engine, so a scan runs before the write transaction (and, on SQLite,
    outside the one-writer turn). Reads through `session` itself when it is already in a transaction (a second
    connection could wait on the first) or when the store is in-memory SQLite (one shared connection)."""
    bind = session.get_bind()
    assert isinstance(bind, Engine), "sessions are bound to an engine"
    in_memory = bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:")
    if in_memory or session.in_transaction():
        yield session
        return
    with read_session(bind) as reader:
        yield reader


def _find_set(session: Session, user_id: int, now: datetime, shortlist: list[int]) -> int | None:
    """In the write transaction: the first shortlisted set still free, else a rescan past the taken ones."""
    found = next((i for i in shortlist if _claim(session, user_id, i, now) is not None), None)
    taken = list(shortlist)
    while found is None and (
        cset := session.exec(_candidates(session, user_id, now, taken).limit(1)).first()
    ):
        assert cset.id is not None
        found = cset.id if has_room(session, cset.id, now) else None
        taken.append(cset.id)  # filled by a lease that committed after this statement's snapshot
    return found


def lease_next_set(
    *,
    session: Session,
    user_id: int,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    seed: int | None = None,
    guidelines_version: int | None = None,
    later_turns_first: bool | None = None,
    _retry: bool = True,
) -> LeasedSet | None:
    """Give `user_id` a set to rank, or None when nothing is waiting (the rules are in the module docstring).

    A labeler's unexpired, unfinished lease is returned again (a page reload shows the same set). Otherwise two
    steps. A read transaction finds a shortlist of the best sets (a walk over the open-sets index, outside the
    write lock). The write transaction then claims the first shortlisted set that still qualifies, checked by
    id: on PostgreSQL its row is locked (`FOR UPDATE SKIP LOCKED`) and its labels are counted again after the
    lock, so a lease committed meanwhile is seen; on SQLite the write transaction holds the write lock from its
    start. Only when every shortlisted set was taken meanwhile does the write transaction scan again. The
    result is loaded before the commit: with `expire_on_commit=False` it needs no second transaction. The
    unique (set, labeler) constraint refuses a second lease of one set by one labeler (two tabs at once).
    `later_turns_first`: with conversations on, the admin's preference (labeler/labels/conversations.py `prefer`:
    True finishes conversations first, False serves fresh prompts first); None: conversations off."""
    now = utcnow()
    params = {"user_id": user_id, "now": now}
    with reading(session) as reader:
        open_lease = reader.exec(_OPEN_LEASE, params=params).first()
        if open_lease is not None and open_lease.token is not None:
            return load_leased(reader, open_lease)
        if open_lease is not None:  # leased before leases had tokens: issue one
            return _issue_token(session, open_lease.id)
        shortlist = _shortlist(reader, params, later_turns_first)
        gold = _gold_draw(reader, user_id, seed) if shortlist else None
        suggesting = suggestion_plan(reader) if shortlist else None
    if not shortlist:
        return None
    set_id = _claim(session, user_id, gold, now) if gold is not None else None
    set_id = set_id if set_id is not None else _find_set(session, user_id, now, shortlist)
    if set_id is None:
        session.rollback()
        return None
    ids = list(session.connection().execute(_DISPLAY_IDS, {"set_id": set_id}).scalars())
    draws = random.Random(seed)
    draws.shuffle(ids)
    suggestion = suggestion_for(session, set_id, suggesting, draws.random()) if suggesting else None
    assignment = Assignment(
        set_id=set_id,
        user_id=user_id,
        display_order=ids,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        token=secrets.token_hex(16),
        guidelines_version=guidelines_version,
        suggestion=suggestion,
    )
    session.add(assignment)
    try:
        session.flush()
        leased = load_leased(session, assignment)
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
            later_turns_first=later_turns_first,
            _retry=False,
        )
    return leased


def _issue_token(session: Session, assignment_id: int | None) -> LeasedSet:
    assignment = session.get(Assignment, assignment_id)
    assert assignment is not None
    assignment.token = secrets.token_hex(16)
    session.add(assignment)
    session.flush()
    leased = load_leased(session, assignment)
    session.commit()
    return leased


def lease_by_token(*, session: Session, user_id: int, token: str) -> Assignment:
    """The lease a page names by its token; refused unless it is this labeler's."""
    assignment = session.exec(_BY_TOKEN, params={"token": token}).first()
    if assignment is None or assignment.user_id != user_id:
        raise LeaseGone("this page's set is not leased to you; reload the page for your current set")
    return assignment
