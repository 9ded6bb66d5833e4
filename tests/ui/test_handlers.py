"""The labeling tab's data side against a real SQLite file (no browser): the page holds only a lease token, and
everything else (the set, the answers' order, the time shown, the guidelines version) comes from the lease."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, func, select, update

from labeler.store.settings import set_labels_needed
from labeler.store.store import MAX_COMMENT_CHARS, LeaseGone, RankingRejected
from labeler.store.tables import Assignment, Completion, Ranking, utcnow
from labeler.store.users import get_user
from labeler.ui.labeling import (
    CUT_OFF,
    PageChoices,
    answer_html,
    next_view,
    read_choices,
    read_page,
    submit_form,
)
from tests.ui.conftest import seeded_engine


@pytest.fixture
def store(tmp_path):
    engine = seeded_engine(tmp_path)
    with Session(engine) as s:
        return engine, get_user(session=s, name="alice").id, get_user(session=s, name="bob").id


def rankings(engine):
    with Session(engine) as s:
        return s.exec(select(Ranking)).all()


def lease(engine, token):
    with Session(engine) as s:
        return s.exec(select(Assignment).where(Assignment.token == token)).one()


def submit(engine, user, view, ranks, flags=None, none_acceptable=False, comment=""):
    choices = read_choices(ranks, flags or [None] * len(ranks), none_acceptable, comment)
    return submit_form(engine, user, view.token, choices)


def test_rank_with_ties_and_flag_reads_the_set_from_the_lease(store):
    engine, alice, _ = store
    view = next_view(engine, alice)
    submit(engine, alice, view, [1, 1, 2, None], [None] * 3 + ["harmful"], comment=" tie! ")
    [row] = rankings(engine)
    ids = lease(engine, view.token).display_order
    assert row.ranks == {str(ids[0]): 1, str(ids[1]): 1, str(ids[2]): 2}
    assert row.flags == {str(ids[3]): "harmful"} and row.comment == "tie!"
    assert row.submission_id == f"lease:{view.token}"
    assert 0 <= row.seconds_spent < 60 and row.guidelines_version == 1  # measured and recorded by the server
    assert next_view(engine, alice).token != view.token


def test_none_acceptable_and_skip(store):
    engine, alice, _ = store
    view = next_view(engine, alice)
    submit(engine, alice, view, [None] * 4, ["nonsensical"] * 4, none_acceptable=True)
    skipped = next_view(engine, alice)
    submit_form(engine, alice, skipped.token, PageChoices([], [], skipped=True))
    rows = rankings(engine)
    assert rows[0].none_acceptable and rows[1].skipped and len(rows) == 2


@pytest.mark.parametrize(
    ("ranks", "flags", "none_acceptable", "message"),
    [
        (
            [1, None, None, None],
            [None] + ["nonsensical"] * 3,
            False,
            "rank at least two",
        ),
        ([1, 2, None, None], ["harmful"] + [None] * 3, False, "answer 1 is both ranked"),
        ([1, 2, None, None], [None] * 4, False, r"answer\(s\) 3, 4 are neither ranked"),
        ([1, 2, 3, 4], [None] * 4, True, "'none acceptable' means no answer is ranked"),
        ([1, 2, "x", 4], [None] * 4, False, "is not a whole number"),
        ([1, 2, True, 3], [None] * 4, False, "answer 3: rank .True. is not a whole number"),
        ([1, 2, 0, 3], [None] * 4, False, "answer 3: rank .0. is not a whole number from 1"),
        ([1, 2, 3, None], [None] * 3 + ["<b>x</b>"], False, "answer 4: unknown flag"),
    ],
)
def test_invalid_submission_rejected_with_message(store, ranks, flags, none_acceptable, message):
    engine, alice, _ = store
    view = next_view(engine, alice)
    with pytest.raises(RankingRejected, match=message):
        submit(engine, alice, view, ranks, flags, none_acceptable)
    assert rankings(engine) == []
    assert next_view(engine, alice).token == view.token  # the same set stays on screen


def test_comment_over_the_limit_is_refused(store):
    engine, alice, _ = store
    view = next_view(engine, alice)
    with pytest.raises(RankingRejected, match=f"at most {MAX_COMMENT_CHARS}"):
        submit(engine, alice, view, [1, 2, 3, 4], comment="x" * (MAX_COMMENT_CHARS + 1))
    assert rankings(engine) == []


def test_double_submit_counted_once(store):
    engine, alice, _ = store
    view = next_view(engine, alice)
    submit(engine, alice, view, [2, 1, 4, 3])
    submit(engine, alice, view, [2, 1, 4, 3])
    with Session(engine) as s:
        assert s.exec(select(func.count(Ranking.id))).one() == 1


def test_another_labelers_or_a_made_up_token_is_refused(store):
    engine, alice, bob = store
    view = next_view(engine, alice)
    for token in (view.token, "0" * 32, "x" * 10_000):
        with pytest.raises(LeaseGone, match="not leased to you"):
            submit_form(engine, bob, token, read_choices([1, 2, 3, 4], [None] * 4, False, ""))
    assert rankings(engine) == []


def _expire(engine, token):
    with Session(engine) as s:
        s.exec(
            update(Assignment)
            .where(Assignment.token == token)
            .values(lease_expires_at=utcnow() - timedelta(1))
        )
        s.commit()


def test_submit_after_the_lease_expired_counts_while_the_set_has_room(store):
    engine, alice, _ = store
    view = next_view(engine, alice)
    _expire(engine, view.token)
    submit(engine, alice, view, [1, 2, 3, 4])
    assert len(rankings(engine)) == 1


def test_submit_after_the_lease_expired_is_refused_once_others_filled_the_set(store):
    engine, alice, bob = store
    with Session(engine) as s:
        set_labels_needed(session=s, k=1)
    view = next_view(engine, alice)
    _expire(engine, view.token)
    taken = next_view(engine, bob)  # the expired slot went back to the pool
    assert lease(engine, taken.token).set_id == lease(engine, view.token).set_id
    submit(engine, bob, taken, [1, 2, 3, 4])
    with pytest.raises(LeaseGone, match="expired"):
        submit(engine, alice, view, [1, 2, 3, 4])
    assert len(rankings(engine)) == 1  # the set got its one label, not two


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("9f86d081", "the page sent no ranking"),
        ({"token": "t", "ranks": "1,2", "flags": []}, "must be lists"),
        ({"token": "t", "ranks": list(range(1, 18)), "flags": []}, "at most 16 answers"),
        ({"token": "t", "ranks": [1, 2], "flags": [], "edits": "new text"}, "edits must be a list"),
        ({"token": "t", "ranks": [1, 2], "flags": [], "edits": [None, 7]}, "answer 2: the edit is not text"),
        ({"token": "t", "ranks": [1, 2], "flags": [], "edits": ["x" * 4001]}, "answer 1: the edit has 4001"),
        (
            {"token": "t", "ranks": [1, 2], "flags": [], "written": {"a": 1}},
            "your own answer: the edit is not",
        ),
    ],
)
def test_a_malformed_page_value_is_refused_with_what_is_wrong(page, message):
    with pytest.raises(RankingRejected, match=message):
        read_page(page, False, "")


def test_the_page_value_reads_ranks_and_flags_by_position():
    choices = read_page(
        {"token": "t", "answers": ["ignored"], "ranks": [2, 1, None], "flags": ["", None, "harmful"]},
        False,
        "ok",
    )
    assert (
        choices.ranks == [2, 1, None] and choices.flags == [None, None, "harmful"] and choices.comment == "ok"
    )


def test_the_page_value_reads_edits_and_their_seconds_by_position():
    value = {"token": "t", "ranks": [2, 1], "flags": [None, None], "edits": [None, "better"]}
    choices = read_page(
        {**value, "edit_seconds": [None, 12.5, 3], "written": "mine", "written_seconds": -4}, False, ""
    )
    assert choices.edits == [None, "better"] and choices.edit_seconds == [None, 12.5]
    assert choices.written == "mine" and choices.written_seconds is None  # a negative time is no time


def test_the_labeling_pages_user_and_guidelines_reads_are_at_most_a_moment_old(store):
    import time
    from types import SimpleNamespace

    import gradio as gr

    from labeler.store.settings import current_guidelines, save_guidelines
    from labeler.store.users import set_disabled
    from labeler.ui.deps import Recent, RecentUsers

    engine, alice, _ = store
    users = RecentUsers(engine, ttl=0.2)
    version = Recent(engine, lambda s: current_guidelines(session=s).version, ttl=0.2)
    request = SimpleNamespace(username="alice")
    assert users.get(request).id == alice and version.get() == 1
    with Session(engine) as s:
        set_disabled(session=s, name="alice", disabled=True)
        save_guidelines(session=s, text="new rules", author="admin")
    time.sleep(0.25)
    assert version.get() == 2
    with pytest.raises(gr.Error, match="disabled"):
        users.get(request)


def test_an_answer_cut_off_by_the_token_limit_says_so_and_a_finished_one_does_not():
    cut = answer_html(Completion(set_id=1, position=0, text="It goes on and", finish_reason="length"))
    assert cut.endswith(CUT_OFF) and "It goes on and" in cut
    assert CUT_OFF not in answer_html(Completion(set_id=1, position=1, text="Done.", finish_reason="eos"))


def test_the_dashboards_figures_are_computed_in_the_background_at_most_once_a_minute_and_say_when(store):
    from labeler.ui.admin_dashboard import FIGURES_SECONDS, as_of, dashboard_data
    from labeler.ui.deps import BackgroundValue

    engine, _, _ = store
    now = [0.0]
    reads: list[float] = []

    def read(session):
        reads.append(now[0])
        return dashboard_data(session)

    figures = BackgroundValue(engine, read, ttl=FIGURES_SECONDS, clock=lambda: now[0], wait=30)
    first = figures.get()
    assert first.value is not None and not first.refreshing
    now[0] = FIGURES_SECONDS - 1
    assert figures.get().value is first.value and len(reads) == 1  # another admin's page: the same figures
    now[0] = FIGURES_SECONDS + 1
    figures.get()
    figures.get(fresh=True)  # "Refresh now"
    assert reads == [0.0, FIGURES_SECONDS + 1, FIGURES_SECONDS + 1]
    snap = figures.get()
    assert snap.made_at is not None and f"{snap.made_at:%H:%M:%S} UTC" in as_of(snap)


def test_a_slow_computation_never_holds_the_page_and_is_not_repeated_for_ten_times_as_long(store):
    """The page waits at most `wait` seconds: it says the figures are being computed and picks them up on a later
    refresh; a computation that took 100 s is not started again for 1,000 s (a tenth of a core at most)."""
    import threading

    from labeler.ui.admin_dashboard import waiting_summary
    from labeler.ui.deps import BackgroundValue

    engine, _, _ = store
    now, release, reads = [0.0], threading.Event(), []

    def read(session):
        release.wait(30)
        reads.append(now[0])
        now[0] += 100.0  # the read takes 100 s of the page's clock
        return f"figures {len(reads)}"

    figures = BackgroundValue(engine, read, ttl=60, clock=lambda: now[0], wait=0.05)
    waiting = figures.get()
    assert waiting.value is None and waiting.refreshing
    assert "Computing the store-wide figures" in waiting_summary(waiting)
    release.set()
    figures.join(30)
    done = figures.get()
    assert done.value == "figures 1" and not done.refreshing and done.seconds == 100.0
    now[0] += 500  # older than the minute, younger than ten times 100 s: no new computation
    assert figures.get().value == "figures 1" and len(reads) == 1
    now[0] += 500
    figures.get()
    figures.join(30)
    assert figures.get().value == "figures 2"


def test_a_served_app_computes_the_figures_as_it_starts_so_the_first_admin_does_not_wait(store, monkeypatch):
    """`rankloop serve` builds the UI with `figures_at_start`: the dashboard's first computation starts then, and
    the first admin's page reads its result instead of starting one."""
    import threading

    from labeler.ui import admin_dashboard
    from labeler.ui.app import build_ui
    from labeler.ui.deps import UIDeps

    engine, _, _ = store
    reads: list[str] = []

    def read(session):
        reads.append(threading.current_thread().name)
        return admin_dashboard.empty_figures()

    monkeypatch.setattr(admin_dashboard, "dashboard_data", read)
    build_ui(UIDeps(engine=engine, home=Path("/tmp")))
    assert reads == []  # a UI built without the flag (tests, scripts) reads nothing until a page asks
    build_ui(UIDeps(engine=engine, home=Path("/tmp"), figures_at_start=True))
    for thread in threading.enumerate():
        if thread.name == "figures":
            thread.join(30)
    assert reads == ["figures"]


def test_after_a_slow_computation_refresh_now_shows_the_last_figures_at_once(store):
    """A refresh does not wait for a computation that took longer than the page's wait last time: it shows the
    last figures, says new ones are coming, and the next refresh has them."""
    import threading
    import time

    from labeler.ui.deps import BackgroundValue

    engine, _, _ = store
    now, gate, reads = [0.0], threading.Event(), []

    def read(session):
        reads.append(now[0])
        if len(reads) == 1:
            now[0] += 100.0  # the first read takes 100 s of the page's clock
            return "first"
        gate.wait(30)
        return "second"

    figures = BackgroundValue(engine, read, ttl=60, clock=lambda: now[0], wait=5)
    assert figures.get().value == "first"  # the first read is waited for (up to 5 s)
    started = time.perf_counter()
    snap = figures.get(fresh=True)
    assert time.perf_counter() - started < 1 and snap.value == "first" and snap.refreshing
    gate.set()
    figures.join(30)
    assert figures.get().value == "second"


def test_a_failed_computation_shows_its_error(store):
    from labeler.ui.admin_dashboard import waiting_summary
    from labeler.ui.deps import BackgroundValue

    engine, _, _ = store

    def read(session):
        raise RuntimeError("disk on fire")

    snap = BackgroundValue(engine, read, ttl=60, wait=30).get()
    assert snap.value is None and "disk on fire" in snap.error and "disk on fire" in waiting_summary(snap)
