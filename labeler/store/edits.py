"""Labelers' edits: an answer a labeler rewrote or wrote from scratch, stored with their ranking (in its transaction)
as a completion of the set with origin `edit`, and placed in that ranking. `labeler/store/store.py`'s
`submit_ranking` calls these; `RankingIn.edits` carries them.

    RankingIn(..., ranks={11: 1, 12: 2, 13: 3}, edits=[EditIn("a better answer", source_id=12, seconds=40)])
    # stored: a completion with origin `edit`, ranked just above answer 12: {11: 1, new: 2, 12: 3, 13: 4}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from labeler.store.errors import RankingRejected
from labeler.store.tables import Completion, id_of

MAX_EDIT_CHARS = (
    4000  # an edited or written answer: longer than any answer the policy writes, bounded like a comment
)
MAX_EDIT_SECONDS = 3600.0  # the time an edit took, as the page measured it, is kept up to this


@dataclass(frozen=True)
class EditIn:
    """An answer a labeler rewrote (`source_id`: the completion it started from) or wrote from scratch (None).

    Unless `rank` places it, it ranks just above its source (so above every answer the labeler ranked below the
    source as well); an answer written from scratch ranks above every answer the labeler did not flag, and with
    "none acceptable" every edit is the set's good answer."""

    text: str
    source_id: int | None = None
    seconds: float | None = None
    rank: int | None = None


def validate_edits(
    edits: Sequence[EditIn], *, set_id: int, none_acceptable: bool, shown: Sequence[int]
) -> None:
    """An edit rewrites one of the answers `shown` (at most one edit each) or is written from scratch (at most
    one); its text is not empty and at most MAX_EDIT_CHARS long; an explicit rank sits in the ranking's range."""
    sources = [e.source_id for e in edits]
    for number, edit in enumerate(edits, start=1):
        what = f"edit {number}" + (f" (of completion {edit.source_id})" if edit.source_id is not None else "")
        if not isinstance(edit.text, str) or not edit.text.strip():
            raise RankingRejected(f"{what} is empty: write the answer or drop the edit")
        if len(edit.text) > MAX_EDIT_CHARS:
            raise RankingRejected(
                f"{what} has {len(edit.text)} characters; at most {MAX_EDIT_CHARS} are kept"
            )
        if edit.source_id is not None and edit.source_id not in shown:
            raise RankingRejected(f"{what}: completion {edit.source_id} is not an answer of set {set_id}")
        if sources.count(edit.source_id) > 1:
            which = "answer" if edit.source_id is None else f"edit of completion {edit.source_id}"
            raise RankingRejected(f"more than one written {which}: keep one")
        if edit.rank is not None:
            top = len(shown) + len(edits)
            if none_acceptable or isinstance(edit.rank, bool) or not 1 <= edit.rank <= top:
                raise RankingRejected(
                    f"{what}: rank {edit.rank!r} must be a whole number from 1 to {top}, and 'none acceptable' "
                    "ranks edits itself (above every answer)"
                )


def merged_ranks(
    ranks: dict[int, int],
    flags: dict[int, str],
    *,
    none_acceptable: bool,
    edits: dict[int, EditIn],
    shown: Sequence[int],
) -> dict[int, int]:
    """The ranking with the labeler's edits in it (`edits`: the new completion id -> its edit), renumbered 1..K.

    An edit without a rank goes just above its source (or, its source flagged, just below the worst ranked
    answer); one written from scratch above every answer. With "none acceptable", every edit ranks above every
    answer shown that the labeler did not flag, and those answers tie."""
    if none_acceptable:
        answers = {cid: 2.0 for cid in shown if cid not in flags}
        levels = {**answers, **dict.fromkeys(edits, 1.0)}
    else:
        levels = {cid: float(r) for cid, r in ranks.items()}
        worst = max(levels.values(), default=0.0)
        for cid, edit in edits.items():
            if edit.rank is not None:
                levels[cid] = float(edit.rank)
            elif edit.source_id is None:
                levels[cid] = 0.5
            elif edit.source_id in ranks:
                levels[cid] = ranks[edit.source_id] - 0.5
            else:
                levels[cid] = worst + 0.5
    return dense(levels)


def dense(ranks: dict[int, float] | dict[int, int]) -> dict[int, int]:
    """Ranks renumbered 1..K in the same order, ties kept."""
    order = {level: k for k, level in enumerate(sorted(set(ranks.values())), start=1)}
    return {cid: order[r] for cid, r in ranks.items()}


def write_edits(
    session: Session, *, set_id: int, author_id: int | None, edits: Sequence[EditIn], shown: Sequence[int]
) -> dict[int, EditIn]:
    """The edits as completions of the set (origin `edit`), flushed in the caller's transaction: the new
    completion id -> its edit. An edit identical to its source is refused with the answer's number."""
    if not edits:
        return {}
    rows = session.exec(select(Completion).where(Completion.set_id == set_id)).all()
    by_id = {id_of(c): c for c in rows}
    position = max((c.position for c in rows), default=-1)
    written: dict[int, EditIn] = {}
    for edit in edits:
        source = by_id.get(edit.source_id) if edit.source_id is not None else None
        if source is not None and source.text.strip() == edit.text.strip():
            number = list(shown).index(id_of(source)) + 1 if id_of(source) in shown else id_of(source)
            raise RankingRejected(f"the edit of answer {number} changes nothing: change it or drop the edit")
        position += 1
        seconds = None if edit.seconds is None else round(min(max(edit.seconds, 0.0), MAX_EDIT_SECONDS), 2)
        row = Completion(
            set_id=set_id,
            position=position,
            text=edit.text.strip(),
            finish_reason="edit",
            origin="edit",
            author_id=author_id,
            source_id=edit.source_id,
            edit_seconds=seconds,
            policy_version_id=source.policy_version_id if source is not None else None,
        )
        session.add(row)
        session.flush()
        written[id_of(row)] = edit
    return written


def stored_edits(session: Session, ranks: dict[str, int]) -> list[tuple[int | None, str]]:
    """The edits a stored ranking holds (its `ranks`' keys): (source completion id or None, text)."""
    ids = [int(cid) for cid in ranks]
    rows = session.exec(
        select(Completion.source_id, Completion.text).where(
            col(Completion.id).in_(ids), col(Completion.origin) == "edit"
        )
    ).all()
    return [(source, text) for source, text in rows]


def same_edits(stored: list[tuple[int | None, str]], edits: Sequence[EditIn]) -> bool:
    """Whether a stored ranking's edits are these (by source and text)."""
    return sorted(stored, key=repr) == sorted(((e.source_id, e.text.strip()) for e in edits), key=repr)
