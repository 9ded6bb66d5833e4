"""The REST API against the real served app (Gradio's server with the API mounted, a real SQLite file): labelling
through the API alone stores what the page stores, the token rules (revoked, disabled, wrong role, a labeler
calling training), imports with their errors, cursor pages, the export, and the admin-only description."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import httpx
import pytest
from datasets import load_dataset
from gradio_client import Client
from load_client import page_from_outputs
from sqlmodel import Session, select

from labeler.api.app import rest_app
from labeler.records.policies import ensure_initial_policy
from labeler.store.api_tokens import create_token, revoke_token
from labeler.store.tables import ApiTokenUse, CompletionSet, Prompt, Ranking, User
from labeler.store.users import UserError, set_disabled
from labeler.ui.app import build_ui, launch
from labeler.ui.deps import UIDeps
from tests.labeler.helpers import make_sets
from tests.ui.conftest import PASSWORDS, TestClock, free_port, seeded_engine

ROOT = Path(__file__).resolve().parents[2]
SETS = 20


@pytest.fixture
def api_app(tmp_path):
    """The app with its API, 20 sets that each want two labels (alice through the API, bob through the page)."""
    engine = seeded_engine(tmp_path, sets=0)
    with Session(engine) as session:
        version = ensure_initial_policy(session=session, base_model="tiny").id
        make_sets(session, SETS, n=4, labels_needed=2, version_id=version)
    deps = UIDeps(engine=engine, home=tmp_path, clock=TestClock())
    port = free_port()
    demo = launch(build_ui(deps), deps, port=port, block=False, api=rest_app(engine))
    yield f"http://127.0.0.1:{port}", engine
    demo.close()


def token_for(engine, user: str) -> str:
    with Session(engine) as session:
        return create_token(session=session, user=user, name="test", by="admin").secret


def api(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30)


def choices_for(texts: list[str]) -> dict:
    """The same choices whoever shows the set and in whatever order: by each answer's own number j of set i."""
    numbers = [tuple(map(int, re.search(r"answer (\d+)\.(\d+)", t).groups())) for t in texts]  # type: ignore[union-attr]
    i = numbers[0][0]
    if i % 5 == 4:
        return {"skip": True}
    if i % 5 == 3:
        return {"ranks": [None] * 4, "flags": ["harmful" if j == 0 else None for _, j in numbers], "none_acceptable": True}  # fmt: skip
    ranks: list[int | None] = [{0: 1, 1: 2, 2: 2, 3: 3}[j] for _, j in numbers]  # answers 1 and 2 tie
    flags: list[str | None] = [None] * 4
    if i % 5 == 2:  # answer 3 flagged instead of ranked
        ranks = [None if j == 3 else r for (_, j), r in zip(numbers, ranks, strict=True)]
        flags = ["nonsensical" if j == 3 else None for _, j in numbers]
    return {"ranks": ranks, "flags": flags, "comment": f"set {i}" if i % 5 == 1 else ""}


def test_twenty_sets_labelled_through_the_api_alone_store_what_the_page_stores(api_app):
    url, engine = api_app
    with api(url, token_for(engine, "alice")) as alice:
        assert alice.get("/me").json()["name"] == "alice"
        labelled = 0
        while (leased := alice.post("/lease").json()["set"]) is not None:
            choice = choices_for([a["text"] for a in leased["answers"]])
            if choice.pop("skip", False):
                answer = alice.post("/skip", json={"token": leased["token"]})
            else:
                answer = alice.post("/submit", json={"token": leased["token"], **choice})
                again = alice.post(
                    "/submit", json={"token": leased["token"], **choice}
                )  # a retry: stored once
                assert again.status_code == 200, again.text
            assert answer.status_code == 200, answer.text
            labelled += 1
        assert labelled == SETS
        refused = alice.post("/submit", json={"token": "not-a-lease-token", "ranks": [1]})
        assert refused.status_code in (409, 422) and refused.json()["detail"]

    bob = Client(url + "/", auth=("bob", PASSWORDS["bob"]), verbose=False)
    out = bob.predict(api_name="/open_page")
    while (page := page_from_outputs(list(out))) is not None:
        choice = choices_for(page.texts)
        if choice.pop("skip", False):
            out = bob.predict({"token": page.token, "ranks": [], "flags": []}, api_name="/skip_set")
        else:
            widget = {"token": page.token, "ranks": choice["ranks"], "flags": choice["flags"]}
            out = bob.predict(
                widget,
                choice.get("none_acceptable", False),
                choice.get("comment", ""),
                "",
                api_name="/submit_ranking",
            )
    with Session(engine) as session:
        names = {u.id: u.name for u in session.exec(select(User))}
        by = {(r.set_id, names[r.user_id]): r for r in session.exec(select(Ranking))}
    assert len(by) == 2 * SETS
    for set_id in {s for s, _ in by}:
        a, b = by[(set_id, "alice")], by[(set_id, "bob")]
        fields = (
            "ranks",
            "flags",
            "none_acceptable",
            "skipped",
            "comment",
            "follow_up",
            "guidelines_version",
        )
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}, set_id
        assert a.submission_id.startswith("lease:") and b.submission_id.startswith("lease:")


def test_undo_through_the_api_gives_the_set_back_with_its_choices(api_app):
    url, engine = api_app
    with api(url, token_for(engine, "alice")) as alice:
        leased = alice.post("/lease").json()["set"]
        ranks = [1, 2, 3, 4]
        assert (
            alice.post(
                "/submit", json={"token": leased["token"], "ranks": ranks, "comment": "ok"}
            ).status_code
            == 200
        )
        back = alice.post("/undo").json()
        assert back["ranks"] == ranks and back["comment"] == "ok"
        assert [a["text"] for a in back["set"]["answers"]] == [a["text"] for a in leased["answers"]]
        assert alice.post("/undo").status_code == 409  # nothing left to undo
        resubmit = {"token": back["set"]["token"], "ranks": [4, 3, 2, 1]}
        assert alice.post("/submit", json=resubmit).status_code == 200
    with Session(engine) as session:
        [row] = session.exec(select(Ranking)).all()
        assert sorted(row.ranks.values()) == [1, 2, 3, 4] and row.comment == ""


def test_token_rules(api_app):
    url, engine = api_app
    alice, admin = token_for(engine, "alice"), token_for(engine, "admin")
    with api(url, None) as anonymous:
        assert anonymous.post("/lease").status_code == 401
        assert anonymous.get("/docs").status_code in (401, 403)
    with api(url, "rlk_made-up") as wrong:
        assert wrong.post("/lease").status_code == 401
    with api(url, alice) as labeler:
        assert labeler.post("/lease").status_code == 200
        # a labeler calling training, data and the description: refused
        assert labeler.post("/jobs", json={"kind": "round"}).status_code == 403
        assert labeler.get("/sets").status_code == 403
        assert labeler.post("/import/prompts", content=b'{"prompt": "hi"}\n').status_code == 403
        assert labeler.get("/openapi.json").status_code == 403
    with api(url, admin) as boss:
        assert boss.get("/sets").status_code == 200
        spec = boss.get("/openapi.json").json()
        assert "/lease" in spec["paths"] and "/jobs" in spec["paths"]
        page = boss.get("/docs")
        assert page.status_code == 200 and "/api/v1/submit" in page.text and "<script" not in page.text
    with Session(engine) as session:
        token_id = session.exec(select(ApiTokenUse.token_id).where(ApiTokenUse.status == 403)).first()
        uses = session.exec(select(ApiTokenUse).where(ApiTokenUse.token_id == token_id)).all()
        assert {u.status for u in uses} == {200, 403} and all(u.address == "127.0.0.1" for u in uses)
        assert any(u.path == "/api/v1/jobs" and u.method == "POST" for u in uses)
        set_disabled(session=session, name="alice", disabled=True)
    with api(url, alice) as labeler:
        assert labeler.post("/lease").status_code == 401  # a disabled user's token stops at once
    with Session(engine) as session:
        set_disabled(session=session, name="alice", disabled=False)
        revoke_token(session=session, token_id=token_id)
        with pytest.raises(UserError):
            create_token(session=session, user="nobody")
    with api(url, alice) as labeler:
        assert labeler.post("/lease").status_code == 401  # revoked


def test_imports_pages_and_the_export_through_the_api(api_app, tmp_path):
    url, engine = api_app
    with api(url, token_for(engine, "admin")) as boss:
        good = b'{"prompt": "Name a colour."}\n{"messages": [{"role": "user", "content": "Name a fruit."}]}\n'
        made = boss.post("/import/prompts", params={"source": "survey"}, content=good)
        assert made.status_code == 200 and made.json()["new"] == 2
        bad = b'{"prompt": "fine"}\n{"title": "no prompt here"}\n'
        refused = boss.post("/import/prompts", params={"source": "broken"}, content=bad)
        assert refused.status_code == 422 and "broken.jsonl:2: field 'prompt'" in refused.json()["detail"]
        pairs = b'{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}\n'
        assert boss.post("/import/pairs", content=pairs).json()["added"] == 1
        assert boss.post("/import/pairs", content=pairs).json() == {
            "source": "api",
            "new": 0,
            "added": 0,
            "skipped": 1,
        }

        first = boss.get("/sets", params={"limit": 7}).json()
        second = boss.get("/sets", params={"limit": 7, "after": first["next"]}).json()
        ids = [s["id"] for s in first["items"] + second["items"]]
        assert len(ids) == 14 and ids == sorted(set(ids)) and len(first["items"][0]["answers"]) == 4
        waiting = boss.get("/sets", params={"waiting": False, "limit": 500}).json()
        assert [s["origin"] for s in waiting["items"]] == ["imported"] and waiting["next"] is None

        labelled = boss.get("/rankings", params={"limit": 500}).json()["items"]
        assert len(labelled) == 1 and labelled[0]["labeler"] is None  # the imported pair's ranking
        export = boss.get("/export", params={"format": "jsonl"})
        assert export.status_code == 200 and export.headers["rankloop-pairs"] == "1"
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(export.content)
    rows = load_dataset("json", data_files=str(path), split="train")
    assert rows[0]["chosen"][-1]["content"] == "Hi!" and rows[0]["rejected"][-1]["content"] == "No."
    with Session(engine) as session:
        assert (
            session.exec(select(Prompt).where(Prompt.source == "broken.jsonl")).first() is None
        )  # nothing half-written
        assert (
            session.exec(select(CompletionSet).where(CompletionSet.origin == "imported")).first() is not None
        )


def test_a_launch_config_is_checked_field_by_field_before_anything_starts(api_app):
    url, engine = api_app
    with api(url, token_for(engine, "admin")) as boss:
        unknown = boss.post("/jobs", json={"kind": "round", "config": {"dpo_betaa": 0.1}})
        assert unknown.status_code == 422 and "dpo_betaa" in unknown.json()["detail"]
        wrong_type = boss.post("/jobs", json={"kind": "round", "config": {"dpo_beta": "high"}})
        assert wrong_type.status_code == 422 and "config.dpo_beta" in wrong_type.json()["detail"]
        out_of_range = boss.post("/jobs", json={"kind": "round", "config": {"dpo_beta": -1}})
        assert out_of_range.status_code == 422 and "beta" in out_of_range.json()["detail"].lower()
        assert boss.post("/jobs", json={"kind": "nothing"}).status_code == 422
        no_runner = boss.post("/jobs", json={"kind": "round"})
        assert no_runner.status_code == 503
        versions = boss.get("/versions").json()
        assert [v["version"] for v in versions] == [0] and versions[0]["current"]


def test_the_docs_example_client_labels_through_the_api(api_app):
    url, engine = api_app
    example = runpy.run_path(str(ROOT / "docs" / "examples" / "api_client.py"))
    assert example["label"](url, token_for(engine, "alice"), 5) == 5
    with Session(engine) as session:
        assert len(session.exec(select(Ranking)).all()) == 5


def test_a_judge_gets_no_token(api_app):
    from labeler.labels.judges import add_judge

    _, engine = api_app
    with Session(engine) as session:
        add_judge(
            session=session, name="rules-1", kind="rules", config={"rules": "instructions"}, created_by="t"
        )
        with pytest.raises(UserError, match="judge"):
            create_token(session=session, user="rules-1")
