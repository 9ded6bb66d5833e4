"""Undo: a labeler takes back their last submission within a short window and ranks the set again.

    undone = undo_last(session=session, user_id=7)     # NothingToUndo (a RankingRejected) says why not
    undone.leased.completions, undone.ranks, undone.flags  # the set back on screen, their choices filled in

In one transaction: the ranking moves to `SupersededRanking` as it was, the set's label count gives its label
back (a skip never took one), and the labeler's lease on the set opens again under a new token, so the next
submit is a new ranking and a retry of the old one cannot store it twice. Rankings already used by a training
round stay in its lineage (the superseded row keeps their id).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from labeler.store.edits import stored_edits
from labeler.store.leasing import DEFAULT_LEASE_SECONDS, LeasedSet, load_leased
from labeler.store.store import RankingRejected
from labeler.store.tables import (
    Assignment,
    CompletionSet,
    Ranking,
    SupersededRanking,
    as_utc,
    id_of,
    table_of,
    utcnow,
)

UNDO_SECONDS = 120


class NothingToUndo(RankingRejected):
    """No submission of this labeler's can be taken back now."""


@dataclass
class Undone:
    leased: LeasedSet  # the set, leased to the labeler again
    ranks: list[int | None]  # their previous choices, by display position
    flags: list[str | None]
    none_acceptable: bool
    comment: str
    skipped: bool
    edits: list[str | None] = field(default_factory=list)  # their edit of each answer, by display position
    written: str | None = None  # the answer they wrote from scratch
    follow_up: str = ""  # the next user message they wrote (conversations)


def undo_last(
    *,
    session: Session,
    user_id: int,
    window_seconds: int = UNDO_SECONDS,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
) -> Undone:
    """Take back `user_id`'s newest ranking if it is at most `window_seconds` old (see the module docstring)."""
    now = utcnow()
    newest = select(Ranking).where(Ranking.user_id == user_id).order_by(col(Ranking.id).desc())
    row = session.exec(newest).first()
    if row is None or as_utc(row.created_at) < now - timedelta(seconds=window_seconds):
        session.rollback()
        raise NothingToUndo(
            f"nothing to undo: a submission can be taken back for {window_seconds // 60} minutes after it is sent"
        )
    lease = session.exec(
        select(Assignment).where(Assignment.set_id == row.set_id, Assignment.user_id == user_id)
    ).first()
    if lease is None:  # ranked without a lease (imported or through the store directly): nothing to reopen
        session.rollback()
        raise NothingToUndo("this ranking was not made on the labeling page, so it cannot be undone here")
    session.add(_superseded(row, now))
    if not row.skipped:
        table = table_of(CompletionSet)
        session.connection().execute(
            update(table).where(table.c.id == row.set_id).values(labels_done=table.c.labels_done - 1)
        )
    shown = lease.display_order
    ranks = [None if row.none_acceptable else row.ranks.get(str(cid)) for cid in shown]
    levels = sorted({r for r in ranks if r is not None})  # without their edits, the answers' ranks renumbered
    ranks = [None if r is None else levels.index(r) + 1 for r in ranks]
    flags = [row.flags.get(str(cid)) for cid in shown]
    edits = _edits_of(session, row)
    undone = (row.none_acceptable, row.comment, row.skipped)
    follow_up = row.follow_up or ""
    session.delete(row)
    lease.completed_at, lease.token = None, secrets.token_hex(16)
    lease.leased_at, lease.lease_expires_at = now, now + timedelta(seconds=lease_seconds)
    session.add(lease)
    session.flush()
    leased = load_leased(session, lease)
    session.commit()
    return Undone(
        leased,
        ranks,
        flags,
        *undone,
        edits=[edits.get(cid) for cid in shown],
        written=edits.get(None),
        follow_up=follow_up,
    )


def _edits_of(session: Session, row: Ranking) -> dict[int | None, str]:
    """The edits a ranking holds: source completion id (None: written from scratch) -> text. They stay in the
    store with the superseded ranking; the page gets their texts back to submit again."""
    return dict(stored_edits(session, row.ranks))


def _superseded(row: Ranking, now: datetime) -> SupersededRanking:
    """The ranking as it was, under its old id, marked superseded at `now`."""
    return SupersededRanking(**row.model_dump(exclude={"id"}), ranking_id=id_of(row), superseded_at=now)
