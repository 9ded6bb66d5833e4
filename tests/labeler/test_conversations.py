"""Conversations (labeler/labels/conversations.py) on the real store: a decided set with a next message becomes
the next turn's prompt from its chosen answer, once; imported follow-ups carry their instructions and pass the
rest on; the depth, the source's choice and a stopped branch end it; the generator serves later turns first."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from labeler.labels.conversations import (
    _decided,
    continue_conversations,
    conversation_tree,
    conversations,
    set_conversations,
    stop_branch,
)
from labeler.records.policies import sample_prompts
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, RankingRejected, add_completion_set, submit_ranking
from labeler.store.tables import Completion, CompletionSet, Prompt, id_of
from tests.labeler.helpers import make_user, make_version

QUESTION = [{"role": "user", "content": "Name a colour."}]


def ask(
    session: Session, messages=QUESTION, source: str = "chat", follow_ups=None, version_id=None
) -> Prompt:
    prompt = Prompt(
        messages=messages, content_hash=str(hash(str(messages))), source=source, follow_ups=follow_ups
    )
    session.add(prompt)
    session.commit()
    session.refresh(prompt)
    add_completion_set(session=session, prompt_id=id_of(prompt), completions=[CompletionIn(t) for t in ("Red.", "Blue.", "Green.")], policy_version_id=version_id)  # fmt: skip
    return prompt


def rank(session: Session, prompt: Prompt, user_id: int, best: str, follow_up: str = "") -> None:
    """The user ranks `best` first and the others after, by id, with `follow_up` as the next message."""
    set_id = session.exec(select(CompletionSet.id).where(CompletionSet.prompt_id == prompt.id)).one()
    answers = session.exec(select(Completion).where(Completion.set_id == set_id)).all()
    order = sorted(answers, key=lambda a: (a.text != best, a.id))
    ranks = {id_of(a): i + 1 for i, a in enumerate(order)}
    lease = lease_next_set(session=session, user_id=user_id)
    assert lease is not None and id_of(lease.set) == set_id
    submit_ranking(session=session, ranking=RankingIn(set_id, user_id, f"{user_id}-{prompt.id}", ranks=ranks, follow_up=follow_up))  # fmt: skip


def test_a_decided_set_with_a_labelers_next_message_becomes_the_next_turn_once(engine):
    with Session(engine) as s:
        version = make_version(s)
        set_conversations(session=s, default="labeler", depth=3)
        first = ask(s, version_id=version.id)
        alice = id_of(make_user(s, "alice"))
        rank(s, first, alice, "Blue.", follow_up="  Now say why.  ")
        assert continue_conversations(session=s) == 1
        assert continue_conversations(session=s) == 0  # once
        second = s.exec(select(Prompt).where(Prompt.turn == 2)).one()
        assert second.messages == [
            *QUESTION,
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Now say why."},
        ]
        chosen = s.get(Completion, second.parent_completion_id)
        assert chosen is not None and chosen.text == "Blue." and chosen.set_id == second.parent_set_id
        assert (second.conversation_id, second.split, second.source) == (first.id, "train", "chat")
        # turn 2's set, decided with a next message, gives turn 3; turn 3 is the depth: no turn 4
        add_completion_set(session=s, prompt_id=id_of(second), completions=[CompletionIn(t) for t in ("Calm.", "Sky.")], policy_version_id=version.id)  # fmt: skip
        s.commit()
        rank(s, second, alice, "Sky.", follow_up="Shorter.")
        assert continue_conversations(session=s) == 1
        third = s.exec(select(Prompt).where(Prompt.turn == 3)).one()
        assert third.conversation_id == first.id and third.messages[-2:] == [
            {"role": "assistant", "content": "Sky."},
            {"role": "user", "content": "Shorter."},
        ]
        add_completion_set(session=s, prompt_id=id_of(third), completions=[CompletionIn(t) for t in ("A.", "B.")], policy_version_id=version.id)  # fmt: skip
        rank(s, third, alice, "A.", follow_up="And again.")
        assert continue_conversations(session=s) == 0
        # the tree, from any of its turns: each turn after the one it continues, with its sets' chosen answers
        tree = conversation_tree(session=s, prompt_id=id_of(second))
        assert [(t.prompt_id, t.turn, t.parent_prompt_id) for t in tree] == [
            (first.id, 1, None),
            (second.id, 2, first.id),
            (third.id, 3, second.id),
        ]
        assert [t.said for t in tree] == ["Name a colour.", "Now say why.", "Shorter."]
        assert [t.continued_from for t in tree] == [None, "Blue.", "Sky."]
        assert [[(x.labels, x.chosen) for x in t.sets] for t in tree] == [[("1/1", "Blue.")], [("1/1", "Sky.")], [("1/1", "A.")]]  # fmt: skip
        assert stop_branch(session=s, prompt_id=id_of(second)) == 2  # turn 2 and the turn after it
        assert [t.stopped for t in conversation_tree(session=s, prompt_id=id_of(first))] == [
            False,
            True,
            True,
        ]
        with pytest.raises(ValueError, match="no prompt 999"):
            conversation_tree(session=s, prompt_id=999)


def test_imported_follow_ups_carry_their_instructions_and_pass_the_rest_on(engine):
    follow_ups = [
        {"content": "Repeat it in capitals.", "instructions": [{"kind": "capitals", "params": {}}]},
        "Now in fewer words.",
    ]
    with Session(engine) as s:
        set_conversations(session=s, default="labeler", by_source={"imported": "list"}, depth=4)
        first = ask(s, source="imported", follow_ups=follow_ups)
        rank(s, first, id_of(make_user(s, "bob")), "Green.", follow_up="ignored: this source reads its list")
        assert continue_conversations(session=s) == 1
        second = s.exec(select(Prompt).where(Prompt.turn == 2)).one()
        assert second.messages[-1] == {"role": "user", "content": "Repeat it in capitals."}
        assert second.instructions == [{"kind": "capitals", "params": {}}]
        assert second.follow_ups == ["Now in fewer words."]


def test_no_next_message_no_source_or_a_stopped_branch_end_the_conversation(engine):
    with Session(engine) as s:
        make_version(s)
        alice = id_of(make_user(s, "alice"))
        quiet = ask(s, messages=[{"role": "user", "content": "one"}])
        rank(s, quiet, alice, "Red.")  # no next message written
        off = ask(s, messages=[{"role": "user", "content": "two"}], source="off")
        rank(s, off, alice, "Red.", follow_up="more")
        stopped = ask(s, messages=[{"role": "user", "content": "three"}])
        rank(s, stopped, alice, "Red.", follow_up="more")
        assert continue_conversations(session=s) == 0  # conversations are off by default
        assert not conversations(session=s).on
        set_conversations(session=s, default="labeler", by_source={"off": "none"})
        stopped.stopped = True
        s.add(stopped)
        s.commit()
        assert continue_conversations(session=s) == 0
        # nothing left to continue: no set without a next message, of a source turned off, or of a stopped branch
        assert _decided(s, conversations(session=s), 64) == []
        with pytest.raises(
            ValueError, match="source 'x': next messages come from one of none, labeler, list"
        ):
            set_conversations(session=s, by_source={"x": "people"})
        with pytest.raises(ValueError, match="depth = 0"):
            set_conversations(session=s, depth=0)


def test_the_generator_serves_later_turns_first_and_never_a_stopped_branch(engine):
    with Session(engine) as s:
        version = make_version(s)
        first = ask(s, version_id=version.id)
        later = Prompt(messages=[*QUESTION, {"role": "assistant", "content": "Red."}, {"role": "user", "content": "Why?"}], content_hash="later", turn=2, conversation_id=first.id)  # fmt: skip
        gone = Prompt(messages=[{"role": "user", "content": "gone"}], content_hash="gone", stopped=True)
        s.add_all(
            [later, gone, Prompt(messages=[{"role": "user", "content": "fresh"}], content_hash="fresh")]
        )
        s.commit()
        picked = sample_prompts(session=s, count=3, policy_version_id=version.id, later_turns_first=True)
        assert picked[0].turn == 2 and "gone" not in {p.content_hash for p in picked}
        fresh = sample_prompts(session=s, count=3, policy_version_id=version.id)
        assert [p.content_hash for p in fresh[:2]] == [
            "fresh",
            "later",
        ]  # fewest sets first, then first turns


def test_leasing_finishes_conversations_or_serves_fresh_prompts_as_the_admin_prefers(engine):
    with Session(engine) as s:
        version = make_version(s)
        later = Prompt(messages=[*QUESTION, {"role": "assistant", "content": "Red."}, {"role": "user", "content": "Why?"}], content_hash="later", turn=2)  # fmt: skip
        s.add(later)
        s.commit()
        add_completion_set(session=s, prompt_id=id_of(later), completions=[CompletionIn("A."), CompletionIn("B.")], policy_version_id=version.id, labels_needed=3)  # fmt: skip
        for i in range(10):  # newer first turns
            ask(s, messages=[{"role": "user", "content": f"q{i}"}], version_id=version.id)
        users = {name: id_of(make_user(s, name)) for name in ("finisher", "fresh", "off")}
        first = lease_next_set(session=s, user_id=users["finisher"], later_turns_first=True)
        fresh = lease_next_set(session=s, user_id=users["fresh"], later_turns_first=False)
        off = lease_next_set(session=s, user_id=users["off"])  # conversations off: the oldest set first
        assert first is not None and first.prompt.turn == 2
        assert fresh is not None and fresh.prompt.messages[0]["content"] == "q0"
        assert off is not None and off.prompt.turn == 2


def test_a_skip_carries_no_next_message_and_a_long_one_is_refused(engine):
    with Session(engine) as s:
        first = ask(s)
        alice = id_of(make_user(s, "alice"))
        set_id = s.exec(select(Completion.set_id)).first()
        assert lease_next_set(session=s, user_id=alice) is not None
        with pytest.raises(RankingRejected, match="a skip carries no ranks, flags, edits, next message"):
            submit_ranking(session=s, ranking=RankingIn(set_id, alice, "skip", skipped=True, follow_up="hi"))
        with pytest.raises(RankingRejected, match="the next message has 5000 characters"):
            rank(s, first, alice, "Red.", follow_up="x" * 5000)


def test_simulated_follow_ups_ask_the_answer_again_under_an_instruction_checked_at_turn_two(engine):
    from labeler.io.instruction_prompts import add_instruction_prompts, generate_prompts, stored_instructions
    from labeler.labels.instructions import strict_pass

    plain = generate_prompts(count=4, split="train", seed=3)
    prompts = generate_prompts(count=4, split="train", seed=3, follow_ups=1)
    assert [p.messages for p in prompts] == [p.messages for p in plain]  # the first turns are unchanged
    with Session(engine) as s:
        version = make_version(s)
        add_instruction_prompts(session=s, prompts=prompts[:1], source="sim")
        set_conversations(session=s, default="list", depth=2)
        first = s.exec(select(Prompt)).one()
        add_completion_set(session=s, prompt_id=id_of(first), completions=[CompletionIn(t) for t in ("Red.", "Blue.", "Green.")], policy_version_id=version.id)  # fmt: skip
        rank(s, first, id_of(make_user(s, "alice")), "Blue.")
        assert continue_conversations(session=s) == 1
        second = s.exec(select(Prompt).where(Prompt.turn == 2)).one()
        asked = stored_instructions(second.instructions)
        assert second.messages[-1]["content"].startswith("Now say that again. ")
        assert len(asked) == 1 and second.messages[-1]["content"].endswith(asked[0].describe())
        assert second.messages[-2] == {"role": "assistant", "content": "Blue."}
        assert isinstance(strict_pass("BLUE.", asked), bool)  # the turn's instruction is checkable like any
