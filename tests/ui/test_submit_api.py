"""The submit endpoint as a browser or API client uses it: sets of different sizes in a row, each ranked fully.

Every set goes into the one ranking widget whatever its size; the ranks a client sends are checked against the
set the lease names (for example rank 4 is fine after a three-answer set)."""

from gradio_client import Client
from load_client import WIDGET_OUTPUT, page_from_outputs
from sqlmodel import Session, func, select

from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.store.tables import Ranking, SupersededRanking
from labeler.store.users import add_user
from labeler.ui.app import build_ui, launch
from labeler.ui.deps import UIDeps
from tests.ui.conftest import PASSWORDS, TestClock, free_port

SIZES = [2, 2, 4, 4, 3, 4, 2]


def test_sets_of_changing_size_are_ranked_in_a_row(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rankloop.db'}")
    with Session(engine) as session:
        add_user(session=session, name="alice", password="alice-password")
        version = ensure_initial_policy(session=session, base_model="tiny").id
        for i, n in enumerate(SIZES):
            prompt = get_or_add_prompt(session=session, messages=[{"role": "user", "content": f"q{i}"}])
            add_completion_set(
                session=session,
                prompt_id=prompt.id,
                completions=[CompletionIn(f"answer {i}.{j}") for j in range(n)],
                policy_version_id=version,
            )
    deps = UIDeps(engine=engine, home=tmp_path)
    port = free_port()
    demo = launch(build_ui(deps), deps, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", auth=("alice", "alice-password"), verbose=False)
        out = client.predict(api_name="/open_page")
        seen = []
        while (page := page_from_outputs(list(out))) is not None:
            n = len(page.texts)
            seen.append(n)
            widget = {"token": page.token, "ranks": list(range(n, 0, -1)), "flags": [None] * n}
            out = client.predict(widget, False, "", "", api_name="/submit_ranking")
            assert "Saved" in out[2], out[2]
    finally:
        demo.close()
    assert seen == SIZES
    with Session(engine) as session:
        assert session.exec(select(func.count(Ranking.id))).one() == len(SIZES)
        assert all(len(r.ranks) >= 2 for r in session.exec(select(Ranking)))


def test_undo_puts_the_last_submission_back_with_its_choices_and_the_resubmit_counts_once(running_app):
    client = Client(running_app.url, auth=("alice", PASSWORDS["alice"]), verbose=False)
    first = page_from_outputs(list(client.predict(api_name="/open_page")))
    assert first is not None
    widget = {"token": first.token, "ranks": [1, 2, None, 3], "flags": [None, None, "harmful", None]}
    out = client.predict(widget, False, "all weak", "Why so weak?", api_name="/submit_ranking")
    assert "Saved" in out[2] and page_from_outputs(list(out)) != first
    back = list(client.predict(api_name="/undo_submit"))
    assert "back on screen" in back[2]
    widget_back = back[WIDGET_OUTPUT]
    assert widget_back["answers"] == first.texts and widget_back["token"] != first.token
    assert widget_back["ranks"] == [1, 2, None, 3]
    assert widget_back["flags"] == [None, None, "harmful", None]
    # the comment, the next message and "none acceptable" as they were sent
    assert (back[3], back[4]["value"], back[5]) == ("all weak", "Why so weak?", False)
    again = {**widget_back, "ranks": [None] * 4, "flags": [None] * 4}
    assert "Saved" in client.predict(again, True, "", "", api_name="/submit_ranking")[2]
    with Session(running_app.engine) as s:
        [row] = s.exec(select(Ranking)).all()
        assert row.ranks == {} and row.none_acceptable
        assert s.exec(select(func.count(SupersededRanking.id))).one() == 1


def test_a_transient_store_error_is_retried_and_a_lasting_one_leaves_the_page_as_it_was(
    running_app, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from labeler.ui import labeling

    real, calls = labeling.submit_form, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE ...", {}, Exception("database is locked"))
        return real(*args)

    client = Client(running_app.url, auth=("alice", PASSWORDS["alice"]), verbose=False)
    first = page_from_outputs(list(client.predict(api_name="/open_page")))
    assert first is not None
    widget = {"token": first.token, "ranks": [1, 2, 3, 4], "flags": [None] * 4}
    monkeypatch.setattr(labeling, "submit_form", flaky)
    out = client.predict(widget, False, "", "", api_name="/submit_ranking")
    assert "Saved" in out[2] and len(calls) == 2  # retried once, stored once
    second = page_from_outputs(list(out))
    assert second is not None

    def broken(*args):
        raise OperationalError("INSERT INTO ranking ...", {}, Exception("disk I/O error"))

    monkeypatch.setattr(labeling, "submit_form", broken)
    out = client.predict({"token": second.token, "ranks": [1, 2, 3, 4], "flags": [None] * 4}, False, "", "", api_name="/submit_ranking")  # fmt: skip
    assert out[2] == labeling.SERVER_TROUBLE and "INSERT" not in str(out)  # one sentence, no SQL, no "Saved."
    assert out[WIDGET_OUTPUT] is None or out[WIDGET_OUTPUT].get("token") in (None, second.token)
    with Session(running_app.engine) as s:
        assert s.exec(select(func.count(Ranking.id))).one() == 1


def test_new_guidelines_show_a_banner_with_what_changed_until_a_set_is_ranked_under_them(tmp_path):

    from labeler.store.settings import current_guidelines, save_guidelines

    engine = make_engine(f"sqlite:///{tmp_path / 'rankloop.db'}")
    with Session(engine) as session:
        add_user(session=session, name="alice", password="alice-password")
        version = ensure_initial_policy(session=session, base_model="tiny").id
        for i in range(4):
            prompt = get_or_add_prompt(session=session, messages=[{"role": "user", "content": f"q{i}"}])
            add_completion_set(session=session, prompt_id=prompt.id, completions=[CompletionIn(f"a{i}.{j}") for j in range(2)], policy_version_id=version)  # fmt: skip
        old = current_guidelines(session=session).text
    clock = TestClock()
    deps = UIDeps(engine=engine, home=tmp_path, clock=clock)
    port = free_port()
    demo = launch(build_ui(deps), deps, port=port, block=False)

    def submit(out):
        page = page_from_outputs(list(out))
        assert page is not None
        return client.predict({"token": page.token, "ranks": [1, 2], "flags": [None, None]}, False, "", "", api_name="/submit_ranking")  # fmt: skip

    def banner(out) -> str:
        return next((v for v in out if isinstance(v, str) and "guidelines changed" in v), "")

    try:
        client = Client(f"http://127.0.0.1:{port}/", auth=("alice", "alice-password"), verbose=False)
        out = submit(client.predict(api_name="/open_page"))  # set 1 ranked under version 1
        assert not banner(out)
        with Session(engine) as session:
            save_guidelines(
                session=session, text=old + "\nPrefer answers that cite a source.\n", author="admin"
            )
        clock.advance(1.0)  # the page reads the current version at most once a second
        out = submit(out)  # set 2 was leased under version 1; set 3 comes under version 2
        text = banner(out)
        assert "version 1 → 2 by admin" in text and "Added: Prefer answers that cite a source." in text
        assert "Removed" not in text
        out = submit(out)  # set 3, ranked under version 2
        assert not banner(out)
    finally:
        demo.close()
