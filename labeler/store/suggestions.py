"""Suggestions on the labeling page: which judge's ranking a lease offers, and on what share of leases. A lease of
a set that judge ranked records its ranking (`Assignment.suggestion`), shown on the page on `share` of those leases
and held back on the rest, so labels with and without it can be compared (labeler/labels/suggestion_stats.py).
Store-level reads only: the lease calls them inside its own transaction.

    set_suggestions(session=s, judge="house-style", share=0.5)
    plan = suggestion_plan(s)                       # before a lease: (judge's user id, name, share) or None
    suggestion_for(s, set_id, plan, draw=0.3)       # the lease's record, or None where the judge did not rank
    ranks, judge = shown_suggestion(lease, answers)  # what the page (or the API) shows of it, by display position
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlmodel import Session, col, select

from labeler.store.settings import get_setting, put_setting
from labeler.store.tables import JUDGE_ROLE, Assignment, Completion, Judge, Ranking, User
from labeler.store.users import get_user

SUGGESTIONS = "suggestions"  # setting: {"judge": name or None, "share": share of leases shown the suggestion}


@dataclass(frozen=True)
class Suggestions:
    judge: str | None = None  # the judge whose ranking the labeling page suggests; None: off
    share: float = 0.5  # of leases where it ranked the set: the rest are held back, to measure anchoring


def suggestions(*, session: Session) -> Suggestions:
    stored = get_setting(session=session, key=SUGGESTIONS, default=None)
    return Suggestions(**stored) if isinstance(stored, dict) else Suggestions()


def judge_exists(session: Session, name: str) -> bool:
    found = session.exec(
        select(Judge.kind).join(User, col(User.id) == col(Judge.user_id)).where(User.name == name)
    ).first()
    return found is not None


def set_suggestions(*, session: Session, judge: str | None, share: float) -> Suggestions:
    """Suggest `judge`'s ranking on the labeling page on `share` of the leases it could (None: off); ValueError
    for a name that is not a judge or a share outside 0-1."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share = {share:g} is out of range: use 0-1")
    if judge and not judge_exists(session, judge):
        raise ValueError(f"no judge named {judge!r} (add one in Admin > Judges)")
    chosen = Suggestions(judge or None, share)
    put_setting(session=session, key=SUGGESTIONS, value=asdict(chosen))
    return chosen


def suggestion_plan(session: Session) -> tuple[int, str, float] | None:
    """(the suggesting judge's user id, its name, the share shown), read before a lease; None when off."""
    chosen = suggestions(session=session)
    if not chosen.judge:
        return None
    user = get_user(session=session, name=chosen.judge)
    if user is None or user.disabled or user.id is None or user.role != JUDGE_ROLE:
        return None
    return user.id, user.name, chosen.share


def suggestion_for(session: Session, set_id: int, plan: tuple[int, str, float], draw: float) -> dict | None:
    """The lease's suggestion record: the judge's ranking of the set, shown when `draw` < share (else held back
    to measure anchoring); None when the judge has not ranked the set (or abstained)."""
    judge_id, name, share = plan
    ranks = session.exec(
        select(Ranking.ranks).where(
            Ranking.set_id == set_id, Ranking.user_id == judge_id, col(Ranking.skipped).is_(False)
        )
    ).first()
    if not ranks:
        return None
    return {"judge": judge_id, "name": name, "shown": draw < share, "ranks": dict(ranks)}


def shown_suggestion(
    lease: Assignment, answers: list[Completion]
) -> tuple[list[int | None] | None, str | None]:
    """The judge's ranking this lease shows, by display position, and the judge's name; (None, None) where the
    lease holds no suggestion or holds it back."""
    offered = lease.suggestion or {}
    shown = offered.get("ranks") if offered.get("shown") else None
    if not shown:
        return None, None
    return [shown.get(str(c.id)) for c in answers], str(offered.get("name") or "a judge")
