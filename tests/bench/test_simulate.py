"""The simulated labelers' edits (bench/simulate.py): they repair what a prompt's instructions ask and nothing more,
through the same store functions as the page."""

from __future__ import annotations

from simulate import PREFERENCES, SimulatedLabeler, label_waiting_sets, repaired
from sqlmodel import select

from labeler.labels.instructions import Instruction, count_words
from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.store.tables import Completion, Prompt, Ranking, id_of


def test_a_repair_meets_each_instruction_it_can_and_changes_nothing_else():
    text = "The Sun is a star, and it shines. It is hot and bright and very"
    rules = [Instruction("lowercase", {}), Instruction("end_phrase", {"phrase": "Any other questions?"})]
    out = repaired(text, "length", rules)  # cut at the limit: ended at its last sentence first
    assert out == "the sun is a star, and it shines. any other questions?"
    assert all(rule.check(out) for rule in rules)
    short = repaired(text, "eos", [Instruction("max_words", {"n": 6})])
    assert count_words(short) < 6 and short.startswith("The Sun is")
    # at least N words cannot be met by a small edit: left as it is
    assert repaired("Yes.", "eos", [Instruction("min_words", {"n": 50})]) == "Yes."


def test_a_labeler_who_edits_stores_the_repaired_best_answer_above_it(session):
    rules = [Instruction("capitals", {}), Instruction("quotation", {})]
    prompt = get_or_add_prompt(session=session, messages=[{"role": "user", "content": "Describe the sea."}])
    prompt.instructions = [r.to_dict() for r in rules]
    session.add(prompt)
    session.commit()
    answers = ["The sea is wide and deep.", "The sea is blue.", "Water, lots of it", "Waves."]
    add_completion_set(
        session=session,
        prompt_id=id_of(prompt),
        completions=[CompletionIn(t) for t in answers],
        policy_version_id=None,
    )
    labeler = SimulatedLabeler("a", preference=PREFERENCES["instructions"], edits=1.0)
    assert label_waiting_sets(session.get_bind(), [labeler]) == 1
    session.expire_all()
    edit = session.exec(select(Completion).where(Completion.origin == "edit")).one()
    assert all(rule.check(edit.text) for rule in rules) and edit.edit_seconds == 30.0
    source = session.get(Completion, edit.source_id)
    assert edit.text == f'"{source.text.upper()}"'
    ranking = session.exec(select(Ranking)).one()
    assert ranking.ranks[str(edit.id)] == 1 and ranking.ranks[str(source.id)] == 2
    assert session.exec(select(Prompt)).one().instructions is not None
