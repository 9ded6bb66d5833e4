"""What an export would write, shown before it runs (Admin > Export): the first rows from the newest ranked sets at
the chosen settings, read from those sets alone, so it opens in the same time in any size of store. The export
itself (labeler/io/export.py) reads every set.

    preview = preview_export(session=s, settings=PairSettings(keep_ties=True), origins=["generated"])
    preview.rows, preview.pairs, preview.sets_read, preview.ranked_sets
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from labeler.io.export import preview_rows
from labeler.labels.dataset import load_set_rankings, preference_records
from labeler.labels.gold import fit_with_gold
from labeler.labels.pairs import PairSettings
from labeler.store.tables import CompletionSet, Ranking

PREVIEW_SETS = 200  # the newest ranked sets a preview reads
PREVIEW_ROWS = 10


@dataclass(frozen=True)
class ExportPreview:
    rows: list[dict]  # the first rows as the export writes them (texts cut to 200 characters)
    pairs: int  # pairs the newest `sets_read` sets give at these settings
    sets_read: int
    ranked_sets: int  # ranked sets the export would read (all of them)
    weighted: bool  # reliability weights, fitted on the sets read (the export fits them on every set)


def preview_export(
    *,
    session: Session,
    settings: PairSettings = PairSettings(),
    origins: list[str] | None = None,
    weights: str = "equal",
    newest: int = PREVIEW_SETS,
) -> ExportPreview:
    """The export's first rows from the newest `newest` ranked sets of `origins` (gold sets left out, as the export
    does), newest first."""
    ranked = select(Ranking.set_id).join(CompletionSet, col(CompletionSet.id) == col(Ranking.set_id))
    ranked = ranked.where(CompletionSet.origin != "gold")
    if origins is not None:
        ranked = ranked.where(col(CompletionSet.origin).in_(origins))
    total = session.exec(select(func.count()).select_from(ranked.distinct().subquery())).one()
    ids = session.exec(ranked.distinct().order_by(col(Ranking.set_id).desc()).limit(newest)).all()
    sets = list(reversed(load_set_rankings(session=session, set_ids=list(ids))))
    fit = (
        fit_with_gold(session=session, sets=sets, flagged=settings.flagged)
        if weights == "reliability"
        else None
    )
    records = preference_records(session=session, settings=settings, sets=sets, reliability=fit)
    return ExportPreview(preview_rows(records, PREVIEW_ROWS), len(records), len(sets), total, fit is not None)


def preview_note(preview: ExportPreview) -> str:
    """The line above the preview: what it read and what the export will."""
    if not preview.ranked_sets:
        return "Nothing to export yet: no ranked sets match these settings."
    weighted = (
        " Reliability weights here are fitted on those sets only; the export fits them on every set."
        if preview.weighted
        else ""
    )
    return (
        f"**Preview** of the first rows at these settings, from the newest {preview.sets_read} ranked sets "
        f"({preview.pairs} pairs from them); the export reads all {preview.ranked_sets} ranked sets.{weighted}"
    )
