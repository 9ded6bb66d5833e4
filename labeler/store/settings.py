"""Run-time settings and versioned guidelines, stored in the database so every process sees the same values."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labeler.store.tables import CompletionSet, Guideline, Ranking, Setting

DEFAULT_GUIDELINES = Path(__file__).resolve().parents[2] / "data" / "guidelines.md"


def get_setting(*, session: Session, key: str, default: object = None) -> object:
    row = session.get(Setting, key)
    return default if row is None else row.value.get("v", default)


def put_setting(*, session: Session, key: str, value: object) -> None:
    row = session.get(Setting, key) or Setting(key=key)
    row.value = {"v": value}
    session.add(row)
    session.commit()


def labels_needed(*, session: Session) -> int:
    value = get_setting(session=session, key="labels_needed", default=1)
    return int(value) if isinstance(value, (int, float, str)) else 1


def set_labels_needed(*, session: Session, k: int, apply_to_waiting: bool = True) -> int:
    """Set the overlap k for new sets; optionally also for generated sets no one has ranked yet. Returns sets updated."""
    if not 1 <= k <= 10:
        raise ValueError(f"labels per set must be between 1 and 10, got {k}")
    updated = 0
    if apply_to_waiting:
        ranked = select(Ranking.set_id).distinct()
        result = session.execute(
            update(CompletionSet)
            .where(col(CompletionSet.origin) == "generated", col(CompletionSet.id).not_in(ranked))
            .values(labels_needed=k)
        )
        updated = getattr(result, "rowcount", 0) or 0
    put_setting(session=session, key="labels_needed", value=k)
    return updated


GOLD_RATE = "gold_rate"
MAX_GOLD_RATE = 0.5


def gold_rate(*, session: Session) -> float:
    """The share of leases that give a gold set (labeler/labels/gold.py); 0 when never set."""
    value = get_setting(session=session, key=GOLD_RATE, default=0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def set_gold_rate(*, session: Session, rate: float) -> None:
    if not 0 <= rate <= MAX_GOLD_RATE:
        raise ValueError(f"gold rate must be between 0 and {MAX_GOLD_RATE} (a share of leases), got {rate}")
    put_setting(session=session, key=GOLD_RATE, value=float(rate))


SELECTION = "selection"
SelectionMode = Literal["random", "uncertainty"]
MAX_OVERSAMPLE = 8


@dataclass(frozen=True)
class Selection:
    """What the pre-generation worker keeps for labelers (rlhf/select/selection.py). `random`: every set it writes, for
    the prompts with the fewest sets first. `uncertainty`: it writes `oversample` candidates per kept set and keeps
    those a label would teach the latest reward model most (the information it adds, rlhf/select/design.py; for models
    saved without it, its members' disagreement or one head's doubt), `random_share` of them at random. `budget`: at most this many sets
    per policy version (0: no limit), so a round's labels go where they count."""

    mode: SelectionMode = "random"
    random_share: float = 0.25
    # 8 candidates per kept set, counting what it costs (bench/active_labeling.py, 18 repeats): random's 256-set
    # accuracy with 118 labeled sets written from 944 candidates, where 2 candidates needed 197 sets from 394
    # candidates: 79 sets fewer for people to rank (each ranked by every labeler of the set) for 550 more sets
    # generated in the background, which cost machine time instead of people's.
    oversample: int = 8
    budget: int = 0

    def check(self) -> Selection:
        if self.mode not in ("random", "uncertainty"):
            raise ValueError(f"selection mode must be random or uncertainty, got {self.mode!r}")
        if not 0 <= self.random_share <= 1:
            raise ValueError(f"random share must be between 0 and 1, got {self.random_share}")
        if not 1 <= self.oversample <= MAX_OVERSAMPLE:
            raise ValueError(
                f"oversample must be between 1 and {MAX_OVERSAMPLE} candidates per set, got {self.oversample}"
            )
        if self.budget < 0:
            raise ValueError(
                f"budget must be 0 (no limit) or a number of sets per version, got {self.budget}"
            )
        return self


def selection(*, session: Session) -> Selection:
    """The admin's selection settings (defaults where never set)."""
    value = get_setting(session=session, key=SELECTION, default=None)
    if not isinstance(value, dict):
        return Selection()
    known = {f.name for f in fields(Selection)}
    return Selection(**{k: v for k, v in value.items() if k in known})


def set_selection(*, session: Session, **changes: object) -> Selection:
    """Change some selection settings (mode, random_share, oversample, budget); checked before it is stored."""
    new = replace(selection(session=session), **changes).check()  # type: ignore[arg-type]
    put_setting(session=session, key=SELECTION, value=asdict(new))
    return new


def current_guidelines(*, session: Session) -> Guideline:
    """The newest guidelines; on a new store, version 1 is the project's default text."""
    newest = select(Guideline).order_by(col(Guideline.version).desc())
    row = session.exec(newest).first()
    if row is None:
        session.rollback()  # read the file with no transaction open
        text = DEFAULT_GUIDELINES.read_text(encoding="utf-8")
        session.add(Guideline(version=1, text=text, author="rankloop"))
        try:
            session.commit()
        except IntegrityError:  # another process stored version 1 first
            session.rollback()
        row = session.exec(newest).first()
        assert row is not None
    return row


@dataclass(frozen=True)
class GuidelinesNews:
    """Guidelines newer than the ones a labeler last ranked under, and the lines that changed."""

    seen: int
    current: Guideline
    added: list[str]
    removed: list[str]


def guidelines_news(*, session: Session, user_id: int, current: int) -> GuidelinesNews | None:
    """What changed since the guidelines version recorded on the labeler's newest ranking, when `current` (the
    current version) is newer; None for a labeler who has not ranked yet or is up to date. It keeps showing until
    they submit a set leased under the new version."""
    newest = (
        select(Ranking.guidelines_version)
        .where(Ranking.user_id == user_id, col(Ranking.guidelines_version).is_not(None))
        .order_by(col(Ranking.created_at).desc(), col(Ranking.id).desc())
        .limit(1)
    )
    seen = session.exec(newest).first()
    if seen is None or seen >= current:
        return None
    rows = {
        g.version: g
        for g in session.exec(select(Guideline).where(col(Guideline.version).in_([seen, current])))
    }
    if current not in rows:
        return None
    old = rows[seen].text.splitlines() if seen in rows else []
    new = rows[current].text.splitlines()
    diff = [d for d in difflib.ndiff(old, new) if d[:2] in ("+ ", "- ") and d[2:].strip()]
    added = [d[2:] for d in diff if d.startswith("+")]
    removed = [d[2:] for d in diff if d.startswith("-")]
    return GuidelinesNews(seen, rows[current], added, removed)


def save_guidelines(*, session: Session, text: str, author: str) -> Guideline:
    """Store a new version (old versions stay: each ranking records the version its labeler saw)."""
    if not text.strip():
        raise ValueError("guidelines text is empty")
    latest = session.exec(select(func.max(Guideline.version))).one() or 0
    row = Guideline(version=latest + 1, text=text, author=author)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
