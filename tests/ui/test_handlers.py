"""The labeling tab's data side against a real SQLite file (no browser)."""

import pytest
from sqlmodel import Session, func, select

from labeler.store import RankingRejected
from labeler.tables import Ranking
from labeler.ui.labeling import NO_RANK, NOT_FLAGGED, next_view, skip_form, submit_form
from labeler.users import get_user
from tests.ui.conftest import seeded_engine


@pytest.fixture
def store(tmp_path):
    engine = seeded_engine(tmp_path)
    with Session(engine) as s:
        return engine, get_user(session=s, name="alice").id


def rankings(engine):
    with Session(engine) as s:
        return s.exec(select(Ranking)).all()


def test_rank_with_ties_and_flag(store):
    engine, alice = store
    view = next_view(engine, alice)
    submit_form(
        engine,
        alice,
        view,
        ["1", "1", "2", NO_RANK],
        [NOT_FLAGGED, NOT_FLAGGED, NOT_FLAGGED, "harmful"],
        False,
        " tie! ",
    )
    [row] = rankings(engine)
    ids = view.completion_ids
    assert row.ranks == {str(ids[0]): 1, str(ids[1]): 1, str(ids[2]): 2}
    assert row.flags == {str(ids[3]): "harmful"} and row.comment == "tie!"
    assert row.seconds_spent >= 0 and row.guidelines_version == 1
    assert next_view(engine, alice).set_id != view.set_id


def test_none_acceptable_and_skip(store):
    engine, alice = store
    view = next_view(engine, alice)
    submit_form(engine, alice, view, [NO_RANK] * 4, ["nonsensical"] * 4, True, "")
    skipped = next_view(engine, alice)
    skip_form(engine, alice, skipped)
    rows = rankings(engine)
    assert rows[0].none_acceptable and rows[1].skipped and len(rows) == 2


@pytest.mark.parametrize(
    ("ranks", "flags", "message"),
    [
        (["1", NO_RANK, NO_RANK, NO_RANK], [NOT_FLAGGED] * 4, "rank at least two"),
        (
            ["1", "2", NO_RANK, NO_RANK],
            ["harmful", NOT_FLAGGED, NOT_FLAGGED, NOT_FLAGGED],
            "answer 1 is both ranked and flagged",
        ),
    ],
)
def test_invalid_submission_rejected_with_message(store, ranks, flags, message):
    engine, alice = store
    view = next_view(engine, alice)
    with pytest.raises(RankingRejected, match=message):
        submit_form(engine, alice, view, ranks, flags, False, "")
    assert rankings(engine) == []
    assert next_view(engine, alice).set_id == view.set_id  # the same set stays on screen


def test_double_submit_counted_once(store):
    engine, alice = store
    view = next_view(engine, alice)
    form = (["2", "1", "4", "3"], [NOT_FLAGGED] * 4, False, "")
    submit_form(engine, alice, view, *form)
    submit_form(engine, alice, view, *form)
    with Session(engine) as s:
        assert s.exec(select(func.count(Ranking.id))).one() == 1
