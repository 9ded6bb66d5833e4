"""Rule judges' checks (labeler/labels/rules.py): what an admin writes, the errors that name the line and the check,
and how a set is ranked by checks met."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labeler.labels.instructions import Instruction
from labeler.labels.rules import Rule, RulesError, parse_rules, rank_by_rules, rules_scores

EVERY_CHECK = """# house style
must match: (?i)\\bthanks\\b
must not match: (?i)as an ai
fewer than 12 words
at least 2 words

starts with: Sure
ends with: Thanks.
all lowercase
all capitals
instructions
"""


def test_every_check_reads_back_as_written():
    rules = parse_rules(EVERY_CHECK)
    assert [r.kind for r in rules] == [
        "must_match", "must_not_match", "fewer_than", "at_least", "starts_with", "ends_with", "lowercase",
        "capitals", "instructions",
    ]  # fmt: skip
    assert [r.describe() for r in rules][:4] == [
        "must match: (?i)\\bthanks\\b", "must not match: (?i)as an ai", "fewer than 12 words", "at least 2 words",
    ]  # fmt: skip
    assert parse_rules("\n".join(r.describe() for r in rules)) == rules


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fewer than 10 words\nshorter please", "rules, line 2: 'shorter please' is not a check"),
        ("must match: (unclosed", "rules, line 1, check 'must match': not a regular expression"),
        ("ends with:   ", "rules, line 1, check 'ends with': give a value after the colon"),
        ("at least ten words", "rules, line 1, check 'at least': write it as 'at least N words'"),
        ("fewer than 0 words", "rules, line 1, check 'fewer than'"),
        ("# only a comment\n\n", "rules: no check"),
        ("all lowercase\n" + "x" * 600, "rules, line 2: longer than 500 characters"),
    ],
)
def test_rules_it_cannot_read_are_refused_naming_the_line_and_the_check(text, message):
    with pytest.raises(RulesError, match=message.replace("(", r"\(").replace("'", "'")):
        parse_rules(text)


def test_a_set_is_ranked_by_checks_met_with_ties_where_equal():
    rules = parse_rules("fewer than 6 words\nends with: thanks.\nmust not match: (?i)as an ai")
    texts = ["Short, thanks.", "Short and plain", "As an AI, I cannot say much at all here", "Brief. Thanks."]
    assert rules_scores(texts, rules, []) == [3, 2, 0, 3]
    assert rank_by_rules(texts, rules, []) == {0: 1, 1: 2, 2: 3, 3: 1}


def test_the_instructions_check_counts_each_instruction_and_abstains_without_any():
    rules = parse_rules("instructions")
    asks = [Instruction("lowercase"), Instruction("end_phrase", {"phrase": "Any other questions?"})]
    texts = ["all lower. any other questions?", "All lower.", "SHOUTING"]
    assert rules_scores(texts, rules, asks) == [2, 0, 0]
    assert rank_by_rules(texts, rules, asks) == {0: 1, 1: 2, 2: 2}
    assert rank_by_rules(texts, rules, []) is None  # nothing applies: the judge abstains
    both = parse_rules("instructions\nfewer than 3 words")
    assert rank_by_rules(texts, both, []) == {0: 2, 1: 1, 2: 1}  # the word count still applies


def test_a_pattern_that_backtracks_without_end_fails_its_check_instead_of_stalling():
    import time

    start = time.perf_counter()
    assert Rule("must_match", "(a|aa)+$").met("a" * 40 + "b", []) == 0  # exponential without the time limit
    assert Rule("must_not_match", "(a|aa)+$").met("a" * 40 + "b", []) == 0
    assert time.perf_counter() - start < 5


@given(st.lists(st.text(max_size=80), min_size=2, max_size=6))
def test_ranks_run_from_one_without_gaps_and_the_best_meets_the_most_checks(texts):
    rules = parse_rules(EVERY_CHECK)
    ranks = rank_by_rules(texts, rules, [])
    assert ranks is not None and set(ranks) == set(range(len(texts)))
    assert sorted(set(ranks.values())) == list(range(1, max(ranks.values()) + 1))
    scores = rules_scores(texts, rules, [])
    for a in ranks:
        for b in ranks:
            assert (ranks[a] < ranks[b]) == (scores[a] > scores[b])
