"""Judges as labelers (labeler/labels/judges.py): a rule judge ranks waiting sets under its own account, abstains
where no check applies, never leases, logs in or counts toward a set's labels, and is managed from the CLI."""

from __future__ import annotations

import json
import re

import pytest
from sqlmodel import Session, col, select

from app import main
from labeler.io.instruction_prompts import add_instruction_prompts
from labeler.labels.instructions import Instruction
from labeler.labels.judge_worth import judge_worth, strength
from labeler.labels.judges import (
    add_judge,
    judge_waiting_sets,
    list_judges,
    set_judge_disabled,
    set_judge_template,
)
from labeler.labels.model_judge import comparison_questions, rank_by_wins
from labeler.labels.rules import RulesError
from labeler.labels.stats import labeler_rows
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, EditIn, RankingIn, add_completion_set, submit_ranking
from labeler.store.tables import Completion, CompletionSet, Prompt, Ranking, id_of
from labeler.store.users import UserError, authenticate
from tests.labeler.helpers import make_sets, make_user, make_version

SHORT = "fewer than 4 words\nmust not match: (?i)sorry"


def rankings_of(session: Session, name: str) -> list[Ranking]:
    from labeler.store.users import get_user

    user = get_user(session=session, name=name)
    assert user is not None
    return list(session.exec(select(Ranking).where(Ranking.user_id == user.id).order_by(col(Ranking.set_id))))


def test_a_rule_judge_ranks_every_waiting_set_once_beside_the_labelers(engine):
    with Session(engine) as s:
        version = make_version(s)
        prompt = Prompt(messages=[{"role": "user", "content": "hi"}], content_hash="h")
        s.add(prompt)
        s.commit()
        answers = ["Sorry, no.", "Hello there friend, how are you", "Hi!", "Hello."]
        add_completion_set(session=s, prompt_id=id_of(prompt), completions=[CompletionIn(a) for a in answers], policy_version_id=version.id)  # fmt: skip
        make_sets(s, 2, version_id=version.id)
        add_judge(session=s, name="short", kind="rules", config={"rules": SHORT}, created_by="admin")
        alice = make_user(s, "alice")
    assert judge_waiting_sets(engine) == 3
    assert judge_waiting_sets(engine) == 0  # each set once
    with Session(engine) as s:
        first = rankings_of(s, "short")[0]
        ids = list(
            s.exec(
                select(Completion.id).where(Completion.set_id == first.set_id).order_by(col(Completion.id))
            )
        )
        assert {int(k): v for k, v in first.ranks.items()} == {ids[0]: 2, ids[1]: 2, ids[2]: 1, ids[3]: 1}
        assert first.seconds_spent is None and not first.skipped  # no human minutes
        # the labelers still get every set: a judge's ranking is not one of a set's labels needed
        assert all(cs.labels_done == 0 for cs in s.exec(select(CompletionSet)))
        assert lease_next_set(session=s, user_id=id_of(alice)) is not None
        [row] = list_judges(session=s)
        assert (row.name, row.kind, row.ranked, row.abstained, row.disabled) == (
            "short",
            "rules",
            3,
            0,
            False,
        )
        assert row.checks == ["fewer than 4 words", "must not match: (?i)sorry"]
        roles = {r.name: r.role for r in labeler_rows(session=s)}
        assert roles["short"] == "judge"  # marked as a judge where labelers are listed


def test_a_judge_abstains_where_no_check_applies_and_skips_labelers_edits(engine):
    from labeler.io.instruction_prompts import InstructionPrompt

    with Session(engine) as s:
        version = make_version(s)
        asks = InstructionPrompt([{"role": "user", "content": "say hi in lowercase"}], [Instruction("lowercase")], "t", "train")  # fmt: skip
        add_instruction_prompts(session=s, prompts=[asks], source="test")
        with_asks, _ = add_completion_set(
            session=s,
            prompt_id=id_of(s.exec(select(Prompt).where(Prompt.source == "test")).one()),
            completions=[CompletionIn("Hi"), CompletionIn("hi"), CompletionIn("HI")],
            policy_version_id=version.id,
        )
        plain_id = id_of(make_sets(s, 1, version_id=version.id)[0])
        asks_id = id_of(with_asks)
        alice = make_user(s, "alice")
        lease = lease_next_set(session=s, user_id=id_of(alice))
        assert lease is not None and lease.set.id == asks_id
        ids = sorted(id_of(c) for c in lease.completions)  # "Hi", "hi", "HI" (the page shows them shuffled)
        ranking = RankingIn(asks_id, id_of(alice), "a1", ranks={ids[0]: 1, ids[1]: 2, ids[2]: 3}, edits=[EditIn(text="hello", source_id=ids[0])])  # fmt: skip
        submit_ranking(session=s, ranking=ranking)
        add_judge(session=s, name="asks", kind="rules", config={"rules": "instructions"})
    assert judge_waiting_sets(engine) == 2
    with Session(engine) as s:
        by_set = {r.set_id: r for r in rankings_of(s, "asks")}
        assert by_set[plain_id].skipped and by_set[plain_id].ranks == {}  # no instructions: abstained
        ranks = {int(k): v for k, v in by_set[asks_id].ranks.items()}
        assert ranks == {ids[0]: 2, ids[1]: 1, ids[2]: 2}  # the labeler's edit is not among them
        [row] = list_judges(session=s)
        assert (row.ranked, row.abstained) == (1, 1)


def test_disabled_judges_rank_nothing_and_judges_never_log_in(engine):
    with Session(engine) as s:
        make_sets(s, 2, version_id=make_version(s).id)
        add_judge(session=s, name="short", kind="rules", config={"rules": SHORT})
        set_judge_disabled(session=s, name="short", disabled=True)
    assert judge_waiting_sets(engine) == 0
    with Session(engine) as s:
        set_judge_disabled(session=s, name="short", disabled=False)
        assert authenticate(session=s, name="short", password="anything at all") is None
        with pytest.raises(UserError, match="no judge named 'alice'"):
            make_user(s, "alice")
            set_judge_disabled(session=s, name="alice", disabled=True)
        with pytest.raises(UserError, match="user 'short' already exists"):
            add_judge(session=s, name="short", kind="rules", config={"rules": SHORT})
        with pytest.raises(RulesError, match="judge 'bad''s rules, line 1"):
            add_judge(session=s, name="bad", kind="rules", config={"rules": "be nice"})
        assert [r.name for r in list_judges(session=s)] == ["short"]  # nothing half-written
    assert judge_waiting_sets(engine) == 2


def test_the_judge_command_adds_lists_runs_and_disables(tmp_path, capsys):
    home = str(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'rankloop.db'}")
    with Session(engine) as s:
        make_sets(s, 3, version_id=make_version(s).id)
    rules = tmp_path / "rules.txt"
    rules.write_text("# be brief\nfewer than 3 words\nends with: .1\n", encoding="utf-8")
    assert main(["judge", "add", "brief", "--rules", str(rules), "--home", home]) == 0
    assert main(["judge", "run", "--home", home]) == 0
    assert "judges wrote 3 rankings" in capsys.readouterr().out
    assert main(["judge", "list", "--home", home]) == 0
    listed = capsys.readouterr().out
    assert "brief (rules, enabled): ranked 3, abstained 0" in listed and "- fewer than 3 words" in listed
    out = tmp_path / "export"
    assert main(["export", "--format", "jsonl", "--out", str(out), "--home", home]) == 0
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 3 and all(r["judges"] == ["brief"] == r["labelers"] for r in rows)
    assert all(r["chosen"][0]["content"].endswith(".1") for r in rows)
    assert main(["judge", "disable", "brief", "--home", home]) == 0
    assert main(["judge", "list", "--home", home]) == 0 and "disabled" in capsys.readouterr().out
    rules.write_text("shorter\n", encoding="utf-8")
    assert main(["judge", "add", "vague", "--rules", str(rules), "--home", home]) == 1
    assert "'shorter' is not a check" in capsys.readouterr().err


def test_a_judges_agreement_with_people_and_a_judge_below_chance_counts_for_nothing(engine):
    from labeler.labels.dataset import load_set_rankings
    from labeler.labels.gold import fit_with_gold

    with Session(engine) as s:
        version = make_version(s)
        sets = make_sets(s, 6, n=3, labels_needed=2, version_id=version.id)
        set_ids = [id_of(x) for x in sets]
        add_judge(session=s, name="longest", kind="rules", config={"rules": "ends with: .2"})
        people = [id_of(make_user(s, name)) for name in ("alice", "bob")]
        for person in people:
            for _ in set_ids:
                lease = lease_next_set(session=s, user_id=person)
                assert lease is not None
                ids = sorted(id_of(c) for c in lease.completions)  # answer i.0, i.1, i.2: people prefer .0
                submit_ranking(session=s, ranking=RankingIn(id_of(lease.set), person, f"{person}-{id_of(lease.set)}", ranks={ids[0]: 1, ids[1]: 2, ids[2]: 3}))  # fmt: skip
    assert judge_waiting_sets(engine) == 6
    with Session(engine) as s:
        [row] = list_judges(session=s)
        # the judge puts .2 first and ties .0 with .1: its strict pairs (.2 over .0, .2 over .1) go against
        # both people's, on every set
        assert (row.agreed, row.compared, row.agreement, row.coverage) == (0, 24, 0.0, 1.0)
        fit = fit_with_gold(session=s, sets=load_set_rankings(session=s))
        judge = next(u for u in fit.accuracy if u not in people)
        assert fit.accuracy[judge] < 0.5 and fit.weight(judge) == 0.0  # not read reversed
        assert all(fit.weight(p) > 0 for p in people)
        # ... so its rankings stand for no human ones; a judge that agrees with the people stands for more
        assert judge_worth(session=s)[judge].saved == 0.0
        add_judge(session=s, name="first", kind="rules", config={"rules": "ends with: .0"})
    assert judge_waiting_sets(engine) == 6
    with Session(engine) as s:
        first = next(r.user_id for r in list_judges(session=s) if r.name == "first")
        worth = judge_worth(session=s)[first]
        assert worth.rankings == 6 and worth.accuracy > 0.5 and worth.people_accuracy > 0.5
        assert worth.saved == pytest.approx(6 * strength(worth.accuracy) / strength(worth.people_accuracy))
        assert worth.saved > 0


LAST_DIGITS = "ends with: .3\nmust match: \\.[23]$"  # answer i.3 first, i.2 second, i.0 and i.1 tied last


def test_a_suggestion_is_offered_on_its_share_of_leases_and_its_acceptance_and_anchoring_are_counted(engine):
    from labeler.labels.suggestion_stats import suggestion_stats
    from labeler.store.suggestions import set_suggestions, suggestions
    from labeler.ui.labeling import _view

    with Session(engine) as s:
        make_sets(s, 4, labels_needed=3, version_id=make_version(s).id)
        add_judge(session=s, name="digits", kind="rules", config={"rules": LAST_DIGITS})
        people = [id_of(make_user(s, name)) for name in ("alice", "bob", "carol")]
        with pytest.raises(ValueError, match="no judge named 'alice'"):
            set_suggestions(session=s, judge="alice", share=1.0)
        with pytest.raises(ValueError, match="out of range"):
            set_suggestions(session=s, judge="digits", share=1.5)
        set_suggestions(session=s, judge="digits", share=1.0)
        assert suggestions(session=s).judge == "digits"
        lease = lease_next_set(session=s, user_id=people[0], seed=1)  # the judge has not ranked it yet
        assert lease is not None and lease.assignment.suggestion is None and _view(lease).suggested is None
    assert judge_waiting_sets(engine) == 4

    def rank(person: int, accept: bool, seed: int, offered_expected: bool = True) -> None:
        with Session(engine, expire_on_commit=False) as s:
            lease = lease_next_set(session=s, user_id=person, seed=seed)
            assert lease is not None
            offered = lease.assignment.suggestion
            if not offered_expected:
                assert offered is None
                ranks = {id_of(c): k + 1 for k, c in enumerate(lease.completions)}
                submit_ranking(session=s, ranking=RankingIn(id_of(lease.set), person, f"{person}-{seed}", ranks=ranks))  # fmt: skip
                return
            assert offered is not None and offered["judge"] != person and offered["name"] == "digits"
            ids = [id_of(c) for c in lease.completions]
            view = _view(lease)
            if offered["shown"]:  # by display position, as the page gets it
                assert (
                    view.suggested == [offered["ranks"][str(i)] for i in ids]
                    and view.suggested_by == "digits"
                )
            else:
                assert view.suggested is None
            mine = {int(k): v for k, v in offered["ranks"].items()} if accept else {i: k + 1 for k, i in enumerate(sorted(ids))}  # fmt: skip
            submit_ranking(
                session=s, ranking=RankingIn(id_of(lease.set), person, f"{person}-{seed}", ranks=mine)
            )

    rank(people[1], accept=True, seed=2)  # shown, accepted as it was
    rank(
        people[2], accept=False, seed=3
    )  # shown, changed: .0 > .1 > .2 > .3, against the judge on 5 pairs of 5
    with Session(engine) as s:
        set_suggestions(session=s, judge="digits", share=0.0)  # held back from now on
    rank(people[0], accept=False, seed=4, offered_expected=False)  # her lease from before the judge ranked
    rank(people[0], accept=False, seed=5)  # a new set: held back, ranked against the judge on all 5 pairs
    with Session(engine) as s:
        st = suggestion_stats(session=s)
    assert (st.shown, st.accepted, st.changed, st.held_back) == (2, 1, 1, 1)
    assert st.agreement_shown == pytest.approx(5 / 10)  # 5 of 5 pairs accepted, 0 of 5 changed
    assert st.agreement_held_back == 0.0


ASKED = re.compile(r"Answer A: (.*)\n\nAnswer B: (.*)\n\nWhich", re.DOTALL)


def prefers_later_answers(model: str, questions: list[str]) -> list[float]:
    """A stand-in model: prefers the answer whose text sorts later, with a pull toward the first place that
    asking both orders must cancel."""
    out = []
    for q in questions:
        found = ASKED.search(q)
        assert found and "- The answer should be honest" in q  # the constitution's principles are shown
        out.append(0.75 if found[1] > found[2] else 0.35)
    return out


def test_wins_over_both_orders_rank_a_set_and_a_judge_that_only_says_a_abstains():
    asked = comparison_questions("{principles}|{prompt}|{first}|{second}", ["be kind"], "hi", ["x", "y", "z"])
    assert len(asked.pairs) == 6 and asked.questions[0] == "- be kind|hi|x|y"
    later = [0.8 if i > j else 0.3 for i, j in asked.pairs]
    assert rank_by_wins(3, asked.pairs, later) == {0: 3, 1: 2, 2: 1}
    assert rank_by_wins(3, asked.pairs, [0.9] * 6) is None  # all position bias, no opinion
    cycle = {(0, 1): 1.0, (1, 0): 0.0, (1, 2): 1.0, (2, 1): 0.0, (2, 0): 1.0, (0, 2): 0.0}
    assert rank_by_wins(3, list(cycle), list(cycle.values())) is None
    two_tied = {(0, 1): 0.9, (1, 0): 0.1, (0, 2): 0.9, (2, 0): 0.1, (1, 2): 0.5, (2, 1): 0.5}
    assert rank_by_wins(3, list(two_tied), list(two_tied.values())) == {0: 1, 1: 2, 2: 2}


def test_a_model_judge_ranks_by_its_models_answers_only_when_a_model_is_there(engine):
    with Session(engine) as s:
        version = make_version(s)
        make_sets(s, 2, n=3, version_id=version.id)
        add_judge(session=s, name="self", kind="model", config={"model": "base"})
        add_judge(session=s, name="short", kind="rules", config={"rules": SHORT})
        with pytest.raises(ValueError, match=r"must show \{second\}"):
            add_judge(
                session=s, name="blind", kind="model", config={"template": "{principles}{prompt}{first}"}
            )
    assert judge_waiting_sets(engine) == 2  # the rule judge; the model judge's sets wait for a model
    asked: list[str] = []

    def broken(model: str, questions: list[str]) -> list[float]:
        asked.append(model)
        raise OSError("no such model")

    assert judge_waiting_sets(engine, compare=broken) == 0 and asked == ["base"]  # logged; the sets wait
    assert judge_waiting_sets(engine, compare=prefers_later_answers) == 2
    with Session(engine) as s:
        for ranking in rankings_of(s, "self"):
            ids = sorted(int(k) for k in ranking.ranks)
            assert [ranking.ranks[str(i)] for i in ids] == [3, 2, 1]  # "answer i.2" sorts last: ranked first
        [row] = [r for r in list_judges(session=s) if r.name == "self"]
        assert (row.kind, row.model, row.template_version, row.ranked) == ("model", "base", 1, 2)
        assert row.template is not None and "Answer A: {first}" in row.template
        assert set_judge_template(session=s, name="self", template=row.template + "\nBe brief.") == 2
        with pytest.raises(UserError, match="no model judge named 'short'"):
            set_judge_template(session=s, name="short", template=row.template)
