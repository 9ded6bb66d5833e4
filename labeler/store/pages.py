"""The store read a page at a time, by cursor (the id after which the page starts), for programs (the REST API's
`GET /api/v1/sets` and `/rankings`): oldest first, each row as plain JSON-ready data.

    with read_session(engine) as session:
        rows = sets_page(session=session, after=0, limit=100, waiting=True)
        more = rankings_page(session=session, after=rows[-1]["id"] if rows else 0, limit=100, labeler="ana")
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from labeler.store.tables import Completion, CompletionSet, Prompt, Ranking, User


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def sets_page(
    *,
    session: Session,
    after: int,
    limit: int,
    origin: str | None = None,
    waiting: bool | None = None,
    policy_version_id: int | None = None,
) -> list[dict[str, Any]]:
    """Sets with id above `after`, with their prompt and answers; `waiting`: still wanting labels (or not)."""
    query = (
        select(CompletionSet, Prompt)
        .join(Prompt, col(Prompt.id) == col(CompletionSet.prompt_id))
        .where(col(CompletionSet.id) > after)
    )
    if origin is not None:
        query = query.where(col(CompletionSet.origin) == origin)
    if waiting is not None:
        still_open = col(CompletionSet.labels_done) < col(CompletionSet.labels_needed)
        query = query.where(still_open if waiting else ~still_open)
    if policy_version_id is not None:
        query = query.where(col(CompletionSet.policy_version_id) == policy_version_id)
    rows = session.exec(query.order_by(col(CompletionSet.id)).limit(limit)).all()
    answers: dict[int, list[dict]] = {}
    ids = [s.id for s, _ in rows]
    for c in session.exec(
        select(Completion).where(col(Completion.set_id).in_(ids)).order_by(col(Completion.id))
    ):
        answers.setdefault(c.set_id, []).append(
            {"id": c.id, "text": c.text, "origin": c.origin, "finish_reason": c.finish_reason}
        )
    return [
        {
            "id": s.id,
            "prompt_id": p.id,
            "messages": p.messages,
            "split": p.split,
            "origin": s.origin,
            "policy_version_id": s.policy_version_id,
            "labels_needed": s.labels_needed,
            "labels_done": s.labels_done,
            "created_at": _iso(s.created_at),
            "answers": answers.get(s.id or 0, []),
        }
        for s, p in rows
    ]


def rankings_page(
    *,
    session: Session,
    after: int,
    limit: int,
    labeler: str | None = None,
    set_id: int | None = None,
    since: datetime | None = None,
    skipped: bool | None = None,
) -> list[dict[str, Any]]:
    """Rankings with id above `after`; `labeler` None in a row: an imported pair's."""
    query = (
        select(Ranking, User.name)
        .join(User, col(User.id) == col(Ranking.user_id), isouter=True)
        .where(col(Ranking.id) > after)
    )
    if labeler is not None:
        query = query.where(col(User.name) == labeler)
    if set_id is not None:
        query = query.where(col(Ranking.set_id) == set_id)
    if since is not None:
        query = query.where(col(Ranking.created_at) >= since)
    if skipped is not None:
        query = query.where(col(Ranking.skipped).is_(skipped))
    return [
        {
            "id": r.id,
            "set_id": r.set_id,
            "labeler": name,
            "ranks": r.ranks,
            "flags": r.flags,
            "none_acceptable": r.none_acceptable,
            "skipped": r.skipped,
            "comment": r.comment,
            "follow_up": r.follow_up,
            "seconds_spent": r.seconds_spent,
            "guidelines_version": r.guidelines_version,
            "created_at": _iso(r.created_at),
        }
        for r, name in session.exec(query.order_by(col(Ranking.id)).limit(limit)).all()
    ]
