"""Importing conversations: prompts with their follow-ups (and each turn's instructions), multi-turn TRL pairs,
and OpenAssistant-style trees, each refused with file, line and field when wrong, nothing written."""

from __future__ import annotations

import json
import re

import pytest
from sqlmodel import Session, select

from app import main
from labeler.io.formats import ImportFormatError
from labeler.io.importers import import_pairs, import_prompts
from labeler.io.oasst import import_oasst
from labeler.store.db import make_engine
from labeler.store.tables import CompletionSet, Prompt, Ranking


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_prompts_keep_their_follow_ups_and_a_wrong_one_is_refused_with_its_line(tmp_path, engine):
    write(tmp_path / "chat.jsonl", [
        {"prompt": "Name a colour.", "follow_ups": ["Why that one?", {"content": "Say it in capitals.", "instructions": [{"kind": "capitals"}]}]},
        {"prompt": "Hello."},
    ])  # fmt: skip
    with Session(engine) as s:
        assert import_prompts(session=s, path=tmp_path / "chat.jsonl").added == 2
        first = s.exec(select(Prompt).where(Prompt.source == "chat.jsonl")).first()
        assert first is not None and first.follow_ups == [
            "Why that one?",
            {"content": "Say it in capitals.", "instructions": [{"kind": "capitals", "params": {}}]},
        ]
    for rows, field in [
        ([{"prompt": "a"}, {"prompt": "b", "follow_ups": [3]}], "follow_ups[0]"),
        ([{"prompt": "a", "follow_ups": [{"content": "x", "instructions": [{"kind": "louder"}]}]}], "follow_ups[0].instructions"),
        ([{"prompt": "a", "follow_ups": "more"}], "follow_ups"),
    ]:  # fmt: skip
        write(tmp_path / "bad.jsonl", rows)
        expected = rf"bad.jsonl:{len(rows)}: field '{re.escape(field)}'"
        with Session(engine) as s, pytest.raises(ImportFormatError, match=expected):
            import_prompts(session=s, path=tmp_path / "bad.jsonl")
    with Session(engine) as s:
        assert len(s.exec(select(Prompt)).all()) == 2  # nothing half-written


def test_multi_turn_pairs_keep_their_whole_history(tmp_path, engine):
    history = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Why?"},
    ]
    write(tmp_path / "pairs.jsonl", [{"prompt": history, "chosen": "It is calm.", "rejected": "No."}])
    with Session(engine) as s:
        assert import_pairs(session=s, path=tmp_path / "pairs.jsonl").added == 1
        assert s.exec(select(Prompt)).one().messages == history


TREE = [
    {"message_id": "p1", "parent_id": None, "role": "prompter", "text": "Name a colour."},
    {"message_id": "a1", "parent_id": "p1", "role": "assistant", "text": "Blue.", "rank": 0},
    {"message_id": "a2", "parent_id": "p1", "role": "assistant", "text": "Sorry.", "rank": 2},
    {"message_id": "p2", "parent_id": "a1", "role": "prompter", "text": "Why blue?"},
    {"message_id": "a3", "parent_id": "p2", "role": "assistant", "text": "It is calm.", "rank": 0},
    {"message_id": "a4", "parent_id": "p2", "role": "assistant", "text": "Because.", "rank": 1},
    {"message_id": "a5", "parent_id": "p2", "role": "assistant", "text": "Unranked."},
]


def test_an_open_assistant_tree_gives_each_turns_prompt_and_its_ranked_pairs(tmp_path, capsys):
    home = str(tmp_path)
    trees = write(tmp_path / "trees.jsonl", TREE)
    assert main(["import", "oasst", trees, "--home", home]) == 0
    assert "imported 2 new prompts and 2 pairs" in capsys.readouterr().out
    engine = make_engine(f"sqlite:///{tmp_path / 'rankloop.db'}")
    with Session(engine) as s:
        prompts = {len(p.messages): p.messages for p in s.exec(select(Prompt)).all()}
        assert prompts[3] == [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Why blue?"},
        ]
        margins = sorted(max(r.ranks.values()) - 1 for r in s.exec(select(Ranking)).all())
        assert margins == [1, 2] and len(s.exec(select(CompletionSet)).all()) == 2
    assert main(["import", "oasst", trees, "--home", home]) == 0
    assert "imported 0 new prompts and 0 pairs" in capsys.readouterr().out  # a repeat adds nothing


def test_a_tree_with_a_missing_parent_or_a_broken_turn_is_refused_with_its_line(tmp_path, engine):
    for broken, message in [
        ({**TREE[3], "parent_id": "a9"}, r"trees.jsonl:4: field 'parent_id': 'a9' is not a message_id in this file"),
        ({**TREE[3], "parent_id": "p1"}, r"trees.jsonl:4: field 'role': a user message answers a user one"),
        ({**TREE[1], "rank": -1}, r"trees.jsonl:2: field 'rank'"),
    ]:  # fmt: skip
        rows = [broken if r["message_id"] == broken["message_id"] else r for r in TREE]
        write(tmp_path / "trees.jsonl", rows)
        with Session(engine) as s, pytest.raises(ImportFormatError, match=message):
            import_oasst(session=s, path=tmp_path / "trees.jsonl")
    with Session(engine) as s:
        assert s.exec(select(Prompt)).first() is None  # nothing written
