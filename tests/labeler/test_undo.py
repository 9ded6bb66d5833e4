"""Undo of the last submission: the old ranking is kept as superseded, the set's label count gives its label back,
the lease opens again under a new token with the old choices, a retry of the old submit cannot store it again,
and the re-submit counts once. Real SQLite store, through leases as the page uses them."""

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, func, select

from labeler.store.db import make_engine
from labeler.store.leasing import LeaseGone, lease_by_token, lease_next_set
from labeler.store.store import PageChoices, submit_leased
from labeler.store.tables import CompletionSet, Ranking, SupersededRanking, id_of, utcnow
from labeler.store.undo import NothingToUndo, undo_last
from tests.labeler.helpers import make_sets, make_user, make_version


@pytest.fixture
def store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    with Session(engine) as s:
        version = make_version(s)
        make_sets(s, 3, n=3, labels_needed=1, version_id=version.id)
        user_id = id_of(make_user(s, "alice"))
    return engine, user_id


def _submit(engine, user_id, choices: PageChoices) -> str:
    with Session(engine, expire_on_commit=False) as s:
        leased = lease_next_set(session=s, user_id=user_id)
        assert leased is not None and leased.assignment.token
        token = leased.assignment.token
    with Session(engine) as s:
        submit_leased(
            session=s, lease=lease_by_token(session=s, user_id=user_id, token=token), choices=choices
        )
    return token


def _labels_done(engine, set_id: int) -> int:
    with Session(engine) as s:
        cset = s.get(CompletionSet, set_id)
        assert cset is not None
        return cset.labels_done


def test_undo_keeps_the_old_ranking_reopens_the_set_and_the_resubmit_counts_once(store):
    engine, user_id = store
    old_token = _submit(engine, user_id, PageChoices([2, 1, None], [None, None, "harmful"], comment="meh"))
    with Session(engine) as s:
        [ranking] = s.exec(select(Ranking)).all()
        set_id = ranking.set_id
    assert _labels_done(engine, set_id) == 1
    with Session(engine, expire_on_commit=False) as s:
        back = undo_last(session=s, user_id=user_id)
    assert back.leased.set.id == set_id and back.leased.assignment.token != old_token
    assert (back.ranks, back.flags, back.comment) == ([2, 1, None], [None, None, "harmful"], "meh")
    assert _labels_done(engine, set_id) == 0
    with Session(engine) as s:
        assert s.exec(select(func.count(Ranking.id))).one() == 0
        [kept] = s.exec(select(SupersededRanking)).all()
        assert kept.ranking_id == id_of(ranking) and kept.comment == "meh" and kept.set_id == set_id
        with pytest.raises(LeaseGone):  # a retry of the old submit names a lease that no longer exists
            lease_by_token(session=s, user_id=user_id, token=old_token)
    # the reopened set is the labeler's current lease: a reload shows it, and the new verdict counts once
    new_token = _submit(engine, user_id, PageChoices([1, 2, 3], [None, None, None]))
    assert new_token == back.leased.assignment.token
    with Session(engine) as s:
        [ranking] = s.exec(select(Ranking)).all()
        assert ranking.set_id == set_id and ranking.ranks == {
            str(c.id): r for c, r in zip(back.leased.completions, [1, 2, 3], strict=True)
        }
    assert _labels_done(engine, set_id) == 1


def test_a_skip_is_undone_without_touching_the_label_count(store):
    engine, user_id = store
    _submit(engine, user_id, PageChoices([], [], skipped=True))
    with Session(engine, expire_on_commit=False) as s:
        back = undo_last(session=s, user_id=user_id)
        assert back.skipped
    assert _labels_done(engine, back.leased.set.id or 0) == 0


def test_nothing_to_undo_before_any_submit_or_after_the_window(store):
    engine, user_id = store
    with Session(engine) as s, pytest.raises(NothingToUndo, match="nothing to undo"):
        undo_last(session=s, user_id=user_id)
    _submit(engine, user_id, PageChoices([1, 2, 3], [None, None, None]))
    with Session(engine) as s:
        s.execute(update(Ranking).values(created_at=utcnow() - timedelta(minutes=5)))
        s.commit()
    with Session(engine) as s, pytest.raises(NothingToUndo, match="for 2 minutes after it is sent"):
        undo_last(session=s, user_id=user_id)
    with Session(engine) as s:
        assert s.exec(select(func.count(Ranking.id))).one() == 1  # nothing changed
