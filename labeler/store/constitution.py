"""The constitution the model critiques and revises answers by (Constitutional AI's first phase), versioned like the
guidelines, and the share of new sets that get a revision. The default is docs/constitution.md.

    with Session(engine) as s:
        c = current_constitution(session=s)                    # the newest version, or the default (version 0)
        save_constitution(session=s, principles=[...], critique_prompt=..., revision_prompt=..., author="ann")
        set_revision_share(session=s, share=0.25)              # a quarter of new sets get one revision
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labeler.store.settings import get_setting, put_setting
from labeler.store.tables import Constitution

DEFAULT_CONSTITUTION = Path(__file__).resolve().parents[2] / "docs" / "constitution.md"
REVISION_SHARE = "revision_share"
MAX_REVISION_SHARE = 1.0
MAX_PRINCIPLES = 64
MAX_PRINCIPLE_CHARS = 500
MAX_PROMPT_CHARS = 4000
CRITIQUE_FIELDS = ("prompt", "answer", "principle")
REVISION_FIELDS = ("prompt", "answer", "principle", "critique")


@dataclass(frozen=True)
class ConstitutionText:
    """A constitution as the worker uses it: version 0 is the default file, never saved."""

    version: int
    principles: list[str]
    critique_prompt: str
    revision_prompt: str

    def critique(self, *, prompt: str, answer: str, principle: str) -> str:
        return self.critique_prompt.format(prompt=prompt, answer=answer, principle=principle)

    def revision(self, *, prompt: str, answer: str, principle: str, critique: str) -> str:
        return self.revision_prompt.format(
            prompt=prompt, answer=answer, principle=principle, critique=critique
        )


def _sections(text: str) -> dict[str, str]:
    """The file's `## Heading` sections by lower-case heading, each as written."""
    parts = re.split(r"^## +(.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip().lower(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def read_default(path: Path = DEFAULT_CONSTITUTION) -> ConstitutionText:
    """The default constitution: its principles (a `- ` list) and two prompts; ValueError naming what is missing."""
    sections = _sections(path.read_text(encoding="utf-8"))
    for name in ("principles", "critique prompt", "revision prompt"):
        if name not in sections:
            raise ValueError(f"{path}: no '## {name.capitalize()}' section")
    principles = [line[2:].strip() for line in sections["principles"].splitlines() if line.startswith("- ")]
    return checked(0, principles, sections["critique prompt"], sections["revision prompt"])


def default_comparison_prompt(path: Path = DEFAULT_CONSTITUTION) -> str:
    """The prompt a model judge asks with unless its admin wrote another (the file's '## Comparison prompt')."""
    sections = _sections(path.read_text(encoding="utf-8"))
    if "comparison prompt" not in sections:
        raise ValueError(f"{path}: no '## Comparison prompt' section")
    return sections["comparison prompt"]


def check_prompt(
    template: str, fields: tuple[str, ...], what: str, required: tuple[str, ...] = ("prompt", "answer")
) -> None:
    """ValueError unless `template` is 1 to MAX_PROMPT_CHARS characters, uses only `fields` and shows `required`."""
    if not template.strip() or len(template) > MAX_PROMPT_CHARS:
        raise ValueError(f"the {what} must be 1 to {MAX_PROMPT_CHARS} characters")
    try:
        template.format(**dict.fromkeys(fields, ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"the {what} may use only {', '.join('{' + f + '}' for f in fields)} (write {{{{ and }}}} for a brace): "
            f"{type(exc).__name__} {exc}"
        ) from exc
    missing = [f for f in required if "{" + f + "}" not in template]
    if missing:
        raise ValueError(f"the {what} must show {', '.join('{' + f + '}' for f in missing)}")


def checked(version: int, principles: list[str], critique: str, revision: str) -> ConstitutionText:
    """A constitution whose principles and prompts can be used; ValueError saying what is wrong."""
    principles = [p.strip() for p in principles if p.strip()]
    if not principles or len(principles) > MAX_PRINCIPLES:
        raise ValueError(f"a constitution needs 1 to {MAX_PRINCIPLES} principles, one per line")
    long = [i + 1 for i, p in enumerate(principles) if len(p) > MAX_PRINCIPLE_CHARS]
    if long:
        raise ValueError(f"principle(s) {long} are over {MAX_PRINCIPLE_CHARS} characters")
    check_prompt(critique, CRITIQUE_FIELDS, "critique prompt")
    check_prompt(revision, REVISION_FIELDS, "revision prompt")
    if "{critique}" not in revision:
        raise ValueError("the revision prompt must show {critique}")
    return ConstitutionText(version, principles, critique, revision)


def current_constitution(*, session: Session) -> ConstitutionText:
    """The newest saved version, else the default file (version 0)."""
    row = session.exec(select(Constitution).order_by(col(Constitution.version).desc())).first()
    if row is None:
        return read_default()
    return ConstitutionText(row.version, list(row.principles), row.critique_prompt, row.revision_prompt)


def save_constitution(
    *, session: Session, principles: list[str], critique_prompt: str, revision_prompt: str, author: str
) -> ConstitutionText:
    """Check and store a new version (the next number); ValueError for a constitution that cannot be used."""
    text = checked(0, principles, critique_prompt, revision_prompt)
    newest = session.exec(select(Constitution.version).order_by(col(Constitution.version).desc())).first()
    version = (newest or 0) + 1
    session.add(
        Constitution(
            version=version,
            principles=text.principles,
            critique_prompt=text.critique_prompt,
            revision_prompt=text.revision_prompt,
            author=author,
        )
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ValueError("another admin saved a version at the same moment: reload and save again") from exc
    return ConstitutionText(version, text.principles, text.critique_prompt, text.revision_prompt)


def revision_share(*, session: Session) -> float:
    """The share of new sets the pre-generation worker adds a revision to (0 when never set: revisions off)."""
    value = get_setting(session=session, key=REVISION_SHARE, default=0.0)
    return float(value) if isinstance(value, int | float) else 0.0


def set_revision_share(*, session: Session, share: float) -> None:
    if not 0 <= share <= MAX_REVISION_SHARE:
        raise ValueError(f"the revision share must be between 0 and {MAX_REVISION_SHARE:g}, got {share}")
    put_setting(session=session, key=REVISION_SHARE, value=float(share))
