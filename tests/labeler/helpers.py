"""Small builders for store tests (real SQLite, no mocks)."""

from __future__ import annotations

from sqlmodel import Session

from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.store.tables import PolicyVersion, id_of
from labeler.store.users import add_user


def make_user(session: Session, name: str, role: str = "labeler"):
    return add_user(session=session, name=name, password="password-" + name, role=role)


def make_version(session: Session, version: int = 0, current: bool = True) -> PolicyVersion:
    pv = PolicyVersion(version=version, base_model="tiny", is_current=current)
    session.add(pv)
    session.commit()
    session.refresh(pv)
    return pv


def make_sets(
    session: Session, count: int, *, n: int = 4, labels_needed: int = 1, version_id: int | None = None
):
    sets = []
    for i in range(count):
        prompt = get_or_add_prompt(
            session=session, messages=[{"role": "user", "content": f"prompt {i} {version_id}"}]
        )
        cset, _ = add_completion_set(
            session=session,
            prompt_id=id_of(prompt),
            completions=[CompletionIn(f"answer {i}.{j}") for j in range(n)],
            policy_version_id=version_id,
            labels_needed=labels_needed,
        )
        sets.append(cset)
    return sets
