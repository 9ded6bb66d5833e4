"""How labelers met a judge's suggestions (labeler/store/suggestions.py offers them on a share of leases and holds
them back on the rest): how many were accepted as they were, how many changed, and labelers' agreement with the
judge with and without the suggestion on screen; a gap between the two is anchoring.

    with Session(engine) as s:
        st = suggestion_stats(session=s)     # SuggestionStats(shown, accepted, held_back, ...)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from labeler.labels.judges import pairs_agreeing
from labeler.store.tables import Assignment, Ranking


@dataclass(frozen=True)
class SuggestionStats:
    shown: int  # rankings made with the suggestion on screen
    accepted: int  # ... that equal it exactly
    held_back: int  # rankings of sets the judge had ranked, made without seeing it
    agreement_shown: float | None  # share of answer pairs ordered as the judge did, suggestion shown
    agreement_held_back: float | None  # the same, held back: a gap between the two is anchoring

    @property
    def changed(self) -> int:
        return self.shown - self.accepted


def suggestion_stats(*, session: Session) -> SuggestionStats:
    """How labelers met the suggestions: accepted as they were, changed, and their agreement with the judge with
    and without the suggestion on screen (a gap between the two is anchoring)."""
    rows = session.exec(
        select(Assignment.suggestion, Ranking.ranks)
        .join(
            Ranking,
            (col(Ranking.set_id) == col(Assignment.set_id))
            & (col(Ranking.user_id) == col(Assignment.user_id)),
        )
        .where(col(Assignment.suggestion).is_not(None), col(Ranking.skipped).is_(False))
    ).all()
    tally = {True: [0, 0], False: [0, 0]}  # shown: [pairs agreed, pairs compared]
    shown = accepted = held = 0
    for suggestion, ranks in rows:
        if not suggestion:
            continue
        is_shown, theirs, mine = (
            bool(suggestion.get("shown")),
            dict(ranks or {}),
            dict(suggestion.get("ranks") or {}),
        )
        shown, held = shown + is_shown, held + (not is_shown)
        accepted += is_shown and theirs == mine
        agreed, compared = pairs_agreeing(mine, theirs)
        tally[is_shown][0] += agreed
        tally[is_shown][1] += compared
    share = {k: (a / c if c else None) for k, (a, c) in tally.items()}
    return SuggestionStats(shown, accepted, held, share[True], share[False])
