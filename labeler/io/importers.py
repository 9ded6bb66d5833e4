"""Import prompts and preference pairs into the store. A file is parsed whole before anything is written,
and written in one transaction, so a malformed file leaves the store untouched.

    rankloop import prompts FILE [--eval-fraction 0.1]   # a `follow_ups` field: the next user messages
    rankloop import pairs FILE          # TRL prompt/chosen/rejected (multi-turn prompts too), or Anthropic HH
    rankloop import oasst FILE          # OpenAssistant-style message trees (labeler/io/oasst.py)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from labeler.io.formats import (
    ImportFormatError,
    Record,
    Source,
    as_messages,
    bounded_text,
    read_records,
    split_hh,
)
from labeler.labels.instructions import Instruction, InstructionError
from labeler.store.store import CompletionIn, add_completion_set, add_prompts, count_label, get_or_add_prompt
from labeler.store.tables import Ranking, id_of

_PROMPT_FIELDS = ("messages", "prompt", "text")
ID_FIELDS = ("id", "pair_id")  # a record's own id, where the file gives one
MAX_MARGIN = 1_000


def refuse_conflicting_ids(path: Path, records: Sequence[Record], contents: Sequence[object]) -> None:
    """Refuse a file where one id (ID_FIELDS) names records of different content, with both lines; the same id
    on identical records is a repeat (stored once, as any repeated record is)."""
    seen: dict[str, tuple[int, object]] = {}
    for record, content in zip(records, contents, strict=True):
        field = next((f for f in ID_FIELDS if record.data.get(f) not in (None, "")), None)
        if field is None:
            continue
        key = str(record.data[field])
        first = seen.setdefault(key, (record.line, content))
        if first[1] != content:
            raise ImportFormatError(
                path,
                record.line,
                field,
                f"{key!r:.60} is also the id of line {first[0]}, whose content differs: an id names one record",
            )


def _prompt_of(record: Record, path: Path) -> list[dict]:
    for name in _PROMPT_FIELDS:
        value = record.data.get(name)
        if value is not None and value != "":
            messages = as_messages(value, path, record.line, name)
            system = record.data.get("system")
            if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
                system = bounded_text(system, path, record.line, "system")
                messages = [{"role": "system", "content": system}, *messages]
            return ends_with_user(messages, path, record.line, name)
    raise ImportFormatError(
        path, record.line, _PROMPT_FIELDS[1], f"missing: give one of {', '.join(_PROMPT_FIELDS)}"
    )


def parse_prompts(path: Path, source: Source | None = None) -> list[list[dict]]:
    return _prompt_records(Path(path), source)[1]


def _prompt_records(path: Path, source: Source | None) -> tuple[list[Record], list[list[dict]]]:
    """The file's records and each one's conversation, ids checked."""
    records = read_records(path, source)
    prompts = [_prompt_of(r, path) for r in records]
    refuse_conflicting_ids(path, records, prompts)
    return records, prompts


def follow_ups_of(record: Record, path: Path) -> list | None:
    """A record's `follow_ups`: the user's next messages, one per turn, each text or {"content", "instructions"}
    (verifiable instructions for that turn); ImportFormatError naming the line and the item that is wrong."""
    value = record.data.get("follow_ups")
    if value is None or value == "":
        return None
    if not isinstance(value, list):
        raise ImportFormatError(path, record.line, "follow_ups", "a list of next user messages, one per turn")
    out: list = []
    for i, item in enumerate(value):
        where = f"follow_ups[{i}]"
        if isinstance(item, str):
            out.append(bounded_text(item, path, record.line, where))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise ImportFormatError(
                path, record.line, where, 'text, or {"content": ..., "instructions": [...]}'
            )
        try:
            asked = [Instruction.from_dict(x).to_dict() for x in item.get("instructions") or []]
        except (InstructionError, TypeError, AttributeError) as exc:
            raise ImportFormatError(path, record.line, f"{where}.instructions", str(exc)) from exc
        out.append(
            {"content": bounded_text(item["content"], path, record.line, where), "instructions": asked}
        )
    return out or None


@dataclass(frozen=True)
class PromptImport:
    added: int
    already_present: int  # prompts of the file the store had already (or the file held twice)


def import_prompts(
    *, session: Session, path: Path, eval_fraction: float = 0.0, seed: int = 0, source: Source | None = None
) -> PromptImport:
    """Add every prompt of `path` (a file, a dataset folder, or with `source` a dataset's split; duplicates
    skipped) with its follow-ups; says how many were new and how many were there already."""
    path = Path(path)
    records, conversations = _prompt_records(path, source)
    added = add_prompts(
        session=session,
        conversations=conversations,
        source=path.name,
        eval_fraction=eval_fraction,
        seed=seed,
        follow_ups=[follow_ups_of(r, path) for r in records],
    )
    return PromptImport(added, len(conversations) - added)


@dataclass(frozen=True)
class PairIn:
    prompt: list[dict]
    chosen: str
    rejected: str
    margin: int
    line: int


def ends_with_user(messages: list[dict], path: Path, line: int, field: str) -> list[dict]:
    """A prompt asks something: its last message is the user's (an assistant turn last leaves nothing to answer)."""
    if messages[-1]["role"] != "user":
        raise ImportFormatError(
            path, line, field, f"the last message must be the user's, not the {messages[-1]['role']}'s"
        )
    return messages


def _response_text(value: object, path: Path, line: int, field: str) -> str:
    if isinstance(value, str):
        return bounded_text(value, path, line, field)
    messages = as_messages(value, path, line, field, default_role="assistant")
    if messages[-1]["role"] != "assistant":
        raise ImportFormatError(path, line, field, "the last message must be the assistant's answer")
    return messages[-1]["content"]


def _margin_of(record: Record, path: Path) -> int:
    value = record.data.get("margin")
    if value is None:
        return 1
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImportFormatError(
            path, record.line, "margin", f"expected a number, got {value!r:.40}"
        ) from None
    if not math.isfinite(number) or abs(number) > MAX_MARGIN:
        raise ImportFormatError(
            path, record.line, "margin", f"expected a finite number up to {MAX_MARGIN}, got {value!r:.40}"
        )
    return max(1, round(number))


def _pair_of(record: Record, path: Path) -> PairIn:
    data, line = record.data, record.line
    for name in ("chosen", "rejected"):
        if data.get(name) in (None, "", []):
            raise ImportFormatError(path, line, name, "missing")
    if data.get("prompt") not in (None, "", []):
        prompt = ends_with_user(as_messages(data["prompt"], path, line, "prompt"), path, line, "prompt")
        chosen = _response_text(data["chosen"], path, line, "chosen")
        rejected = _response_text(data["rejected"], path, line, "rejected")
    elif isinstance(data["chosen"], str) and isinstance(data["rejected"], str):
        try:
            prompt, chosen, rejected = split_hh(data["chosen"], data["rejected"])
        except ValueError as exc:
            raise ImportFormatError(path, line, "chosen", f"not an HH transcript pair: {exc}") from None
        for name, text in (("chosen", chosen), ("rejected", rejected)):
            bounded_text(text, path, line, name)
    else:
        raise ImportFormatError(
            path, line, "prompt", "missing (needed unless chosen/rejected are HH transcripts)"
        )
    if chosen.strip() == rejected.strip():
        raise ImportFormatError(
            path, line, "rejected", "is the same answer as chosen: a pair needs two answers"
        )
    return PairIn(prompt, chosen, rejected, _margin_of(record, path), line)


def parse_pairs(path: Path, source: Source | None = None) -> list[PairIn]:
    path = Path(path)
    records = read_records(path, source)
    pairs = [_pair_of(r, path) for r in records]
    refuse_conflicting_ids(path, records, [(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs])
    return pairs


def _pair_key(pair: PairIn) -> str:
    raw = repr((pair.prompt, pair.chosen, pair.rejected)).encode()
    return "import:" + hashlib.sha256(raw).hexdigest()[:48]


@dataclass(frozen=True)
class PairImport:
    added: int
    already_present: int


def import_pairs(*, session: Session, path: Path, source: Source | None = None) -> PairImport:
    """Store each pair as an imported two-completion set ranked chosen > rejected. Re-importing is a no-op."""
    path = Path(path)
    return store_pairs(session=session, pairs=parse_pairs(path, source), source=path.name)


def store_pairs(*, session: Session, pairs: Sequence[PairIn], source: str) -> PairImport:
    """Parsed pairs stored as imported sets, in one transaction (those already present skipped)."""
    keys = [_pair_key(p) for p in pairs]
    present = set(
        session.exec(select(Ranking.submission_id).where(col(Ranking.submission_id).in_(keys))).all()
    )
    added = 0
    try:
        for pair, key in zip(pairs, keys, strict=True):
            if key in present:
                continue
            present.add(key)
            prompt = get_or_add_prompt(session=session, messages=pair.prompt, source=source)
            cset, (chosen_row, rejected_row) = add_completion_set(
                session=session,
                prompt_id=id_of(prompt),
                completions=[CompletionIn(pair.chosen), CompletionIn(pair.rejected)],
                policy_version_id=None,
                origin="imported",
                source=f"{source}:{pair.line}",
                commit=False,
            )
            ranks = {str(chosen_row.id): 1, str(rejected_row.id): 1 + pair.margin}
            session.add(Ranking(set_id=id_of(cset), user_id=None, submission_id=key, ranks=ranks))
            count_label(session, id_of(cset))
            added += 1
        session.commit()
    except Exception:
        session.rollback()
        raise
    return PairImport(added=added, already_present=len(pairs) - added)
