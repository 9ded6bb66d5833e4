"""Verifiable instructions: each checker on hand-written answers that meet and miss it; the prompt generator's
held-out split shares no topic or parameter value with training; simulated labelers rank by instructions met."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from simulate import SimulatedLabeler, label_waiting_sets
from sqlmodel import Session, select

from labeler.io.instruction_prompts import (
    TOPICS,
    VALUES,
    add_instruction_prompts,
    generate_prompts,
    stored_instructions,
)
from labeler.labels.instructions import (
    KINDS,
    Instruction,
    InstructionError,
    compatible,
    instructions_then_ending,
    strict_pass,
)
from labeler.store.store import CompletionIn, add_completion_set
from labeler.store.tables import Prompt, Ranking, id_of

# kind, params, answers that meet it, answers that miss it
CASES = [
    ("lowercase", {}, ["all quiet here, no shouting."], ["Not all lowercase.", "12345"]),
    ("capitals", {}, ["ALL OF IT, LOUD."], ["ALMOST all of it.", "!!!"]),
    ("no_commas", {}, ["One clause. Another clause."], ["Yes, a comma.", "   "]),
    ("keyword", {"word": "water"}, ["Drink WATER daily."], ["Watermelon is not it.", "Drink juice."]),
    ("max_words", {"n": 5}, ["Four words right here."], ["Five words are too many.", ""]),
    ("min_words", {"n": 5}, ["Five words are enough here."], ["Only four words here."]),
    (
        "end_phrase",
        {"phrase": "That is all."},
        ["Tea first. that is all.", "Done. That is all.  \n"],
        ["That is all. And more.", "That is all"],
    ),
    ("start_word", {"word": "Well"}, ["Well, here goes.", "**Well** then."], ["Wellness first.", "Oh well."]),
    ("quotation", {}, ['"Quoted from start to end."'], ['"Only the start.', "No quotes at all."]),
    ("bullets", {"n": 2}, ["Two things:\n* first\n- second"], ["* one only", "* a\n* b\n* c", "*no space"]),
    ("title", {}, ["<<On Tea>>\nSteep it well."], ["<<>> empty", "<<broken\ntitle>>", "No title."]),
    (
        "postscript",
        {"marker": "P.S."},
        ["Body.\n\nP.S. remember the milk", "body\np.s. lowercase counts"],
        ["Body. P.S. inline mid-line does not start a line", "Body.\nP.S."],
    ),
]


def test_every_kind_has_hand_written_cases():
    assert {kind for kind, *_ in CASES} == set(KINDS)


@pytest.mark.parametrize(("kind", "params", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_checker_meets_and_misses(kind, params, good, bad):
    rule = Instruction(kind, params)
    assert [rule.check(t) for t in good] == [True] * len(good)
    assert [rule.check(t) for t in bad] == [False] * len(bad)
    assert rule.describe() and Instruction.from_dict(rule.to_dict()) == rule


def test_bad_instructions_are_refused_with_the_reason():
    with pytest.raises(InstructionError, match="unknown instruction kind 'shout'"):
        Instruction("shout")
    with pytest.raises(InstructionError, match="'max_words' needs n"):
        Instruction("max_words")


def test_strict_pass_needs_every_instruction():
    rules = [Instruction("lowercase"), Instruction("max_words", {"n": 6})]
    assert strict_pass("short and quiet.", rules)
    assert not strict_pass("Short and loud.", rules)
    assert not compatible(["max_words", "min_words"]) and compatible(["lowercase", "keyword"])


def test_held_out_prompts_share_no_topic_or_parameter_value_with_training():
    train = generate_prompts(count=300, split="train", seed=3)
    heldout = generate_prompts(count=60, split="heldout", seed=3)
    assert not set(TOPICS["train"]) & set(TOPICS["heldout"])
    assert {p.topic for p in train} <= set(TOPICS["train"]) and {p.topic for p in heldout} <= set(
        TOPICS["heldout"]
    )
    for kind, params in VALUES.items():
        for name, pools in params.items():
            assert not set(pools["train"]) & set(pools["heldout"]), (kind, name)
            used = {
                (p.split, r.params[name]) for p in train + heldout for r in p.instructions if r.kind == kind
            }
            assert {v for s, v in used if s == "train"} <= set(pools["train"]), (kind, name)
            assert {v for s, v in used if s == "heldout"} <= set(pools["heldout"]), (kind, name)
    for p in train + heldout:  # every prompt is one request plus compatible instructions
        assert 1 <= len(p.instructions) <= 2 and compatible([r.kind for r in p.instructions])
    assert len({p.text for p in train}) == 300
    # the preferred length flips from prompt to prompt
    kinds = {r.kind for p in train for r in p.instructions}
    assert {"max_words", "min_words"} <= kinds


def test_simulated_labelers_rank_by_instructions_met_through_the_store(engine):
    prompt = generate_prompts(count=1, split="train", seed=0)[0]
    rules = [Instruction("capitals"), Instruction("max_words", {"n": 8})]
    prompt = type(prompt)([{"role": "user", "content": "Describe tea. " + " ".join(r.describe() for r in rules)}], rules, "tea", "train")  # fmt: skip
    with Session(engine) as s:
        assert add_instruction_prompts(session=s, prompts=[prompt], source="gen") == 1
        row = s.exec(select(Prompt)).one()
        assert stored_instructions(row.instructions) == rules
        answers = ["TEA IS WARM.", "Tea is warm.", "TEA IS A WARM DRINK THAT MANY PEOPLE ENJOY.", "tea"]
        _, completions = add_completion_set(
            session=s,
            prompt_id=id_of(row),
            completions=[CompletionIn(a) for a in answers],
            policy_version_id=None,
        )
        ids = [id_of(c) for c in completions]
    assert (
        label_waiting_sets(engine, [SimulatedLabeler("a", noise=0.1, preference=instructions_then_ending)])
        == 1
    )
    with Session(engine) as s:
        ranks = s.exec(select(Ranking)).one().ranks
    order = sorted(ids, key=lambda c: ranks[str(c)])
    assert order[0] == ids[0]  # both met; then the ones meeting one (capitals; fewer than 8 words)
    assert set(order[1:3]) == {ids[1], ids[2]} and order[3] == ids[3]


def test_the_noise_free_judge_is_the_preference():
    lab = SimulatedLabeler("j", noise=5.0, preference=instructions_then_ending)
    rules = [Instruction("lowercase")]
    answers = [SimpleNamespace(id=1, text="quiet.", finish_reason="eos"), SimpleNamespace(id=2, text="LOUD.", finish_reason="eos")]  # fmt: skip
    assert lab.score("quiet.", "eos", rules) > lab.score("LOUD.", "eos", rules)
    ranks = lab.rank(answers, random.Random(0), rules)
    assert sorted(ranks.values()) == [1, 2]


def test_simulated_labelers_can_tie_close_answers_and_reject_a_whole_set():
    lab = SimulatedLabeler(
        "t", noise=0.0, preference=instructions_then_ending, tie_within=0.1, none_below=-1.0
    )
    rules = [Instruction("lowercase")]
    answers = [
        SimpleNamespace(id=1, text="quiet one.", finish_reason="eos"),
        SimpleNamespace(id=2, text="quiet two.", finish_reason="eos"),
        SimpleNamespace(id=3, text="LOUD.", finish_reason="eos"),
    ]
    assert lab.verdict(answers, random.Random(0), rules).ranks == {1: 1, 2: 1, 3: 2}
    cut_off = [SimpleNamespace(id=i, text="LOUD AND", finish_reason="length") for i in (1, 2)]
    assert lab.verdict(cut_off, random.Random(0), rules).none_acceptable
    strict = SimulatedLabeler("s", noise=0.0, preference=instructions_then_ending)  # tie_within 0: never ties
    assert sorted(strict.rank(answers, random.Random(0), rules).values()) == [1, 2, 3]
