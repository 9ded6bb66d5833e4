"""Labelers' edits: stored as completions of the set with the ranking, placed just above their source, never
shown to other labelers, bounded, taken back by undo, exported as chosen and as SFT data. Real SQLite, no mocks."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, col, select

from labeler.io.export import export_preferences
from labeler.labels.dataset import best_answers, preference_records
from labeler.store.leasing import lease_next_set
from labeler.store.store import (
    MAX_EDIT_CHARS,
    EditIn,
    PageChoices,
    RankingIn,
    RankingRejected,
    submit_leased,
    submit_ranking,
)
from labeler.store.tables import Completion, Ranking, id_of
from labeler.store.undo import undo_last
from tests.labeler.helpers import make_sets, make_user


def leased_set(session: Session, name: str = "alice", *, labels_needed: int = 1):
    user = make_user(session, name)
    make_sets(session, 1, labels_needed=labels_needed)
    return user, lease_next_set(session=session, user_id=user.id)


def choices(ranks, **kw) -> PageChoices:
    return PageChoices(ranks=ranks, flags=[None] * len(ranks), **kw)


def test_an_edit_is_stored_as_a_completion_and_ranks_just_above_its_source(session):
    alice, leased = leased_set(session)
    shown = leased.assignment.display_order
    # answers ranked 1, 2, 3, 4 by display position; the labeler rewrites the third
    edits = [None, None, "a better answer 3", None]
    ranking = submit_leased(
        session=session,
        lease=leased.assignment,
        choices=choices([1, 2, 3, 4], edits=edits, edit_seconds=[None, None, 41.5, None]),
    )
    edit = session.exec(select(Completion).where(Completion.origin == "edit")).one()
    assert (edit.text, edit.source_id, edit.author_id, edit.edit_seconds) == (
        "a better answer 3",
        shown[2],
        alice.id,
        41.5,
    )
    assert edit.set_id == id_of(leased.set) and edit.finish_reason == "edit"
    ranks = {int(k): v for k, v in ranking.ranks.items()}
    # above its source and everything ranked below it; below the answers ranked above its source
    assert [ranks[shown[0]], ranks[shown[1]], ranks[id_of(edit)], ranks[shown[2]], ranks[shown[3]]] == [
        1,
        2,
        3,
        4,
        5,
    ]
    pairs = {(r.chosen_id, r.rejected_id) for r in preference_records(session=session)}
    assert (id_of(edit), shown[2]) in pairs and (id_of(edit), shown[3]) in pairs
    assert (shown[1], id_of(edit)) in pairs
    records = [r for r in preference_records(session=session) if r.chosen_id == id_of(edit)]
    assert {r.chosen_origin for r in records} == {"edit"} and {r.rejected_origin for r in records} == {
        "generated"
    }


def test_an_explicit_rank_places_the_edit_and_a_written_answer_goes_first(session):
    alice, leased = leased_set(session)
    shown = leased.assignment.display_order
    ranking = RankingIn(
        set_id=id_of(leased.set),
        user_id=alice.id,
        submission_id="s1",
        ranks={cid: k + 1 for k, cid in enumerate(shown)},
        edits=[EditIn("rewritten 4", source_id=shown[3], rank=1), EditIn("my own answer")],
    )
    row = submit_ranking(session=session, ranking=ranking)
    by_text = {c.text: id_of(c) for c in session.exec(select(Completion).where(Completion.origin == "edit"))}
    ranks = {int(k): v for k, v in row.ranks.items()}
    assert ranks[by_text["my own answer"]] == 1  # written from scratch: above every answer
    assert ranks[by_text["rewritten 4"]] == ranks[shown[0]] == 2  # ranked 1 explicitly: ties the best answer
    assert ranks[shown[3]] == 5


def test_none_acceptable_with_a_written_answer_votes_for_it_over_every_unflagged_answer(session):
    _, leased = leased_set(session)
    shown = leased.assignment.display_order
    flags = [None, "harmful", None, None]
    submit_leased(
        session=session,
        lease=leased.assignment,
        choices=PageChoices(ranks=[None] * 4, flags=flags, none_acceptable=True, written="a good answer"),
    )
    written = session.exec(select(Completion).where(Completion.origin == "edit")).one()
    assert written.source_id is None
    pairs = {(r.chosen_id, r.rejected_id) for r in preference_records(session=session)}
    assert pairs == {(id_of(written), cid) for cid in shown if cid != shown[1]}
    assert [a.why for a in best_answers(session=session)] == ["edit"]


def test_edits_are_bounded_and_checked_and_nothing_is_half_written(session):
    _, leased = leased_set(session)
    shown = leased.assignment.display_order
    lease = leased.assignment
    bad = [
        (choices([1, 2, 3, 4], edits=["x" * (MAX_EDIT_CHARS + 1)]), "at most"),
        (choices([1, 2, 3, 4], edits=["   "]), "empty"),
        (choices([1, 2, 3, 4], edits=[None, None, None, None, "fifth"]), "choices for more"),
        (PageChoices(ranks=[None] * 4, flags=[None] * 4, skipped=True, written="x"), "skip carries"),
    ]
    for page, message in bad:
        with pytest.raises(RankingRejected, match=message):
            submit_leased(session=session, lease=lease, choices=page)
    text = session.get(Completion, shown[0]).text
    with pytest.raises(RankingRejected, match="changes nothing"):
        submit_leased(session=session, lease=lease, choices=choices([1, 2, 3, 4], edits=[text]))
    session.rollback()
    assert session.exec(select(Completion).where(Completion.origin == "edit")).all() == []
    assert session.exec(select(Ranking)).all() == []


def test_a_repeated_submit_stores_the_edit_once_and_a_different_one_is_refused(session):
    _, leased = leased_set(session)
    page = choices([2, 1, 3, 4], edits=["better 1", None, None, None])
    first = submit_leased(session=session, lease=leased.assignment, choices=page)
    again = submit_leased(session=session, lease=leased.assignment, choices=page)
    assert again.id == first.id
    assert len(session.exec(select(Completion).where(Completion.origin == "edit")).all()) == 1
    with pytest.raises(RankingRejected, match="different choices"):
        submit_leased(
            session=session,
            lease=leased.assignment,
            choices=choices([2, 1, 3, 4], edits=["other", None, None, None]),
        )
    assert len(session.exec(select(Completion).where(Completion.origin == "edit")).all()) == 1


def test_other_labelers_never_see_an_edit_and_consensus_keeps_its_pairs(session):
    _, leased = leased_set(session, labels_needed=2)
    submit_leased(
        session=session,
        lease=leased.assignment,
        choices=choices([1, 2, 3, 4], edits=["better", None, None, None]),
    )
    bob = make_user(session, "bob")
    theirs = lease_next_set(session=session, user_id=bob.id)
    assert theirs.set.id == leased.set.id
    assert sorted(theirs.assignment.display_order) == sorted(leased.assignment.display_order)
    assert all(c.origin == "generated" for c in theirs.completions)
    submit_leased(session=session, lease=theirs.assignment, choices=choices([4, 3, 2, 1]))
    edit = session.exec(select(Completion).where(Completion.origin == "edit")).one()
    chosen = [r for r in preference_records(session=session) if r.chosen_id == id_of(edit)]
    assert chosen and all(r.num_labelers == 2 for r in chosen)


def test_undo_gives_the_page_its_edits_back_and_keeps_the_old_ones(session):
    alice, leased = leased_set(session)
    page = choices([1, 2, 3, 4], edits=[None, "better 2", None, None], written="from scratch")
    submit_leased(session=session, lease=leased.assignment, choices=page)
    undone = undo_last(session=session, user_id=alice.id)
    assert undone.ranks == [1, 2, 3, 4]  # the answers' own order, without the edits between them
    assert undone.edits == [None, "better 2", None, None] and undone.written == "from scratch"
    assert best_answers(session=session) == []  # a superseded ranking's edits are no one's best answer
    submit_leased(session=session, lease=undone.leased.assignment, choices=page)
    assert [a.completion for a in best_answers(session=session)] == ["better 2", "from scratch"]


def test_export_writes_edits_as_chosen_and_the_best_answers_as_sft(tmp_path, session):
    _, leased = leased_set(session)
    submit_leased(
        session=session,
        lease=leased.assignment,
        choices=choices([2, 1, 3, 4], edits=[None, "edited best", None, None]),
    )
    result = export_preferences(session=session, out=tmp_path, fmt="jsonl")
    rows = [json.loads(line) for line in (tmp_path / "preferences.jsonl").read_text().splitlines()]
    edited = [r for r in rows if r["chosen"][0]["content"] == "edited best"]
    assert len(edited) == 4 and {r["chosen_origin"] for r in edited} == {"edit"}
    sft = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert result.sft == len(sft) == 1
    assert sft[0]["completion"] == [{"role": "assistant", "content": "edited best"}]
    assert (
        sft[0]["prompt"][0]["role"] == "user" and sft[0]["why"] == "edit" and sft[0]["labelers"] == ["alice"]
    )
    assert "best answers (SFT): 1" in (tmp_path / "README.md").read_text()


def test_answers_every_labeler_ranked_first_are_best_answers(session):
    _, leased = leased_set(session, labels_needed=2)
    submit_leased(session=session, lease=leased.assignment, choices=choices([2, 1, 3, 4]))
    alice_best = leased.assignment.display_order[1]
    bob = make_user(session, "bob")
    theirs = lease_next_set(session=session, user_id=bob.id).assignment
    # bob ranks alice's best second
    others = [cid for cid in theirs.display_order if cid != alice_best]
    order = [others[0], alice_best, *others[1:]]
    submit_leased(
        session=session, lease=theirs, choices=choices([order.index(c) + 1 for c in theirs.display_order])
    )
    assert best_answers(session=session) == []  # they disagree on the best
    carol = make_user(session, "carol")
    make_sets(session, 1)
    hers = lease_next_set(session=session, user_id=carol.id)
    submit_leased(session=session, lease=hers.assignment, choices=choices([3, 1, 2, 4]))
    best = best_answers(session=session)
    assert [(a.completion_id, a.why) for a in best] == [
        (hers.assignment.display_order[1], "ranked first by all")
    ]
    assert session.exec(select(Completion).where(col(Completion.origin) == "edit")).all() == []
