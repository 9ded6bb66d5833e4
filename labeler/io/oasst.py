"""Import OpenAssistant-style message trees: one message a line (`message_id`, `parent_id`, `role`: `prompter` or
`assistant` (`user` too), `text`, and for assistant replies an optional `rank`, 0 the best among its siblings).
Every prompter message becomes a prompt holding its whole conversation from the root; the ranked replies to it
become pairs (the better rank chosen, their rank difference the margin). The file is read whole and checked
before anything is written: a parent that is not in the file, a turn that does not alternate, or a loop is
refused with the file, line and field.

    rankloop import oasst trees.jsonl
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session

from labeler.io.formats import ImportFormatError, Record, bounded_text, read_records
from labeler.io.importers import PairImport, PairIn, store_pairs
from labeler.store.store import add_prompts

ROLES = {"prompter": "user", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Message:
    id: str
    parent: str | None
    role: str  # user | assistant
    text: str
    rank: int | None
    line: int


@dataclass(frozen=True)
class OasstImport:
    prompts: int
    pairs: PairImport


def _message(record: Record, path: Path) -> Message:
    data, line = record.data, record.line
    mid = data.get("message_id")
    if not isinstance(mid, str) or not mid:
        raise ImportFormatError(path, line, "message_id", "missing: every message needs its id")
    role = ROLES.get(str(data.get("role", "")))
    if role is None:
        raise ImportFormatError(path, line, "role", f"{data.get('role')!r}: use prompter or assistant")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ImportFormatError(path, line, "text", "missing: the message's text")
    parent = data.get("parent_id") or None
    rank = data.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise ImportFormatError(path, line, "rank", f"{rank!r}: a whole number from 0 (the best)")
    return Message(
        mid, None if parent is None else str(parent), role, bounded_text(text, path, line, "text"), rank, line
    )


def parse_oasst(path: Path) -> tuple[list[list[dict]], list[PairIn]]:
    """The prompts (each prompter message's conversation) and the ranked replies' pairs of a tree file."""
    path = Path(path)
    messages: dict[str, Message] = {}
    for record in read_records(path):
        m = _message(record, path)
        if m.id in messages:
            raise ImportFormatError(
                path, m.line, "message_id", f"{m.id!r} is also line {messages[m.id].line}'s"
            )
        messages[m.id] = m
    for m in messages.values():
        _check_parent(m, messages, path)
    conversation = {m.id: _conversation(m, messages, path) for m in messages.values() if m.role == "user"}
    replies: dict[str, list[tuple[int, Message]]] = {}
    for m in messages.values():
        if m.role == "assistant" and m.parent is not None and m.rank is not None:
            replies.setdefault(m.parent, []).append((m.rank, m))
    pairs = [
        PairIn(conversation[asked], better.text, worse.text, low - high, worse.line)
        for asked, ranked in replies.items()
        for high, better in ranked
        for low, worse in ranked
        if high < low
    ]
    return list(conversation.values()), pairs


def _check_parent(m: Message, messages: dict[str, Message], path: Path) -> None:
    if m.parent is None:
        if m.role != "user":
            raise ImportFormatError(
                path, m.line, "parent_id", "an assistant reply must answer a prompter message"
            )
        return
    parent = messages.get(m.parent)
    if parent is None:
        raise ImportFormatError(path, m.line, "parent_id", f"{m.parent!r} is not a message_id in this file")
    if parent.role == m.role:
        raise ImportFormatError(
            path, m.line, "role", f"a {m.role} message answers a {parent.role} one: turns alternate"
        )


def _conversation(m: Message, messages: dict[str, Message], path: Path) -> list[dict]:
    """The messages from the root to `m`, as chat turns; ImportFormatError for a loop."""
    chain, seen, at = [], set(), m
    while True:
        if at.id in seen:
            raise ImportFormatError(path, m.line, "parent_id", "the parents loop back: no root")
        seen.add(at.id)
        chain.append({"role": at.role, "content": at.text})
        if at.parent is None:
            return chain[::-1]
        at = messages[at.parent]


def import_oasst(*, session: Session, path: Path) -> OasstImport:
    """Store a tree file's prompts and pairs (one transaction each; a bad file writes nothing)."""
    path = Path(path)
    prompts, pairs = parse_oasst(path)
    added = add_prompts(session=session, conversations=prompts, source=path.name)
    return OasstImport(added, store_pairs(session=session, pairs=pairs, source=path.name))
