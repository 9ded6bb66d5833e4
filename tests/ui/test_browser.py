"""Real browser: Playwright drives Debian's headless Chromium against a running app (tiny model, SQLite file)."""

from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from labeler.store.tables import Ranking
from tests.ui.conftest import PASSWORDS

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium (.ci/run installs it)",
    ),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def log_in(browser, url: str, name: str, password: str, **context):
    page = browser.new_page(**{"viewport": {"width": 1400, "height": 1000}, **context})
    page.goto(url)
    page.locator("input[type=text]").first.fill(name)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Login").click()
    return page


def stored_rankings(engine, count: int, timeout: float = 15.0) -> list[Ranking]:
    """The store's rankings once there are `count` of them (a submit in flight when the page changed)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as s:
            rows = s.exec(select(Ranking).order_by(col(Ranking.id))).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.2)


def test_labeler_ranks_with_clicks_and_keyboard_then_admin_sees_it(running_app, browser, tmp_path):
    bad = log_in(browser, running_app.url, "alice", "not-the-password")
    bad.get_by_text("Incorrect").wait_for(timeout=10_000)
    bad.screenshot(path=tmp_path / "wrong-password.png")

    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    assert page.locator("#admin-tab-button, button[role=tab]:has-text('Admin')").count() == 0
    first_prompt = page.locator("#prompt").inner_text()
    order = page.locator("#ranker .rl-order")
    # clicks: answer 2 is best, then answer 1; keys: "=" "3" ties answer 3 with answer 1, "f" "4" opens answer
    # 4's flag menu, where the labeler picks the reason
    page.locator("#answer-1").click()
    page.locator("#answer-0").click()
    page.keyboard.press("=")
    page.keyboard.press("3")
    page.keyboard.press("f")
    page.keyboard.press("4")
    page.wait_for_function("document.activeElement && document.activeElement.matches('#answer-3 select')")
    page.locator("#answer-3 select").select_option("nonsensical")
    page.get_by_text("Flagged: 4 (nonsensical)").wait_for(timeout=5_000)
    assert order.inner_text() == "2 > 1 = 3"
    page.keyboard.press("Backspace")  # undo the tie, then answer 3 comes last
    page.keyboard.press("3")
    page.wait_for_function("document.querySelector('#ranker .rl-order').innerText === '2 > 1 > 3'")
    assert page.locator("#answer-3 select").input_value() == "nonsensical"
    page.screenshot(path=tmp_path / "ranked.png", full_page=True)
    # Enter on the focused "None acceptable" box submits and leaves the box as it was
    page.locator("#none-acceptable input").focus()
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    assert not page.locator("#none-acceptable input").is_checked()
    page.wait_for_function(f"document.querySelector('#prompt').innerText !== {first_prompt!r}")
    assert page.locator("#ranker .rl-order").count() == 0  # the next set starts unranked
    page.screenshot(path=tmp_path / "next-set.png", full_page=True)

    # after a submit the guidelines are folded and the next set's first answer is on the first screen
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator("#answer-0 .rl-badge").bounding_box()
    assert box is not None and box["y"] + box["height"] <= 800, box
    # tick "None acceptable" and press Enter: it submits as none acceptable
    second_prompt = page.locator("#prompt").inner_text()
    page.locator("#none-acceptable input").check()
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#prompt').innerText !== {second_prompt!r}")
    # the prompt's text changes as the request starts (its loading timer): the store says when it is saved
    first, second = stored_rankings(running_app.engine, 2)
    ids = first.ranks.keys()
    assert sorted(first.ranks.values()) == [1, 2, 3] and list(first.flags.values()) == ["nonsensical"]
    assert not first.none_acceptable and len(ids) == 3
    assert second.none_acceptable and second.ranks == {}

    admin = log_in(browser, running_app.url, "admin", PASSWORDS["admin"])
    admin.locator("#dashboard-summary").wait_for(
        state="visible", timeout=20_000
    )  # admins land on the dashboard
    admin.locator("#dashboard-refresh").click()
    admin.get_by_text("Rankings:** 2").or_(admin.get_by_text("Rankings: 2")).first.wait_for(timeout=15_000)
    admin.screenshot(path=tmp_path / "dashboard.png", full_page=True)


def test_phone_width_drag_to_reorder_layout_and_undo(running_app, browser, tmp_path):
    from labeler.store.tables import SupersededRanking

    page = log_in(browser, running_app.url, "bob", PASSWORDS["bob"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    order = page.locator("#ranker .rl-order")
    page.locator("#answer-0").click()
    page.locator("#answer-1").click()
    page.locator("#answer-2 .rl-head").drag_to(page.locator("#answer-0"))  # 3 goes just above 1
    page.wait_for_function("document.querySelector('#ranker .rl-order')?.innerText === '3 > 1 > 2'")
    page.locator("#answer-3 .rl-head").drag_to(page.locator("#answer-1"))  # 4 goes just above 2
    page.wait_for_function("document.querySelector('#ranker .rl-order')?.innerText === '3 > 1 > 4 > 2'")
    # the action bar stays on the first screen at phone width: Submit is reachable without scrolling
    page.evaluate("window.scrollTo(0, 0)")
    bar = page.locator("#submit-btn").bounding_box()
    assert bar is not None and bar["y"] >= 0 and bar["y"] + bar["height"] <= 844, bar
    page.screenshot(path=tmp_path / "phone.png")
    page.locator("#submit-btn").click()
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    # undo brings the ranking back as it was; re-rank and submit again: one ranking stored, one superseded
    page.locator("#undo-btn").click()
    page.wait_for_function("document.querySelector('#ranker .rl-order')?.innerText === '3 > 1 > 4 > 2'")
    page.locator("#ranker .rl-clear").click()
    for i in (3, 2, 1, 0):
        page.locator(f"#answer-{i}").click()
    assert order.inner_text() == "4 > 3 > 2 > 1"
    page.locator("#submit-btn").click()
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    with Session(running_app.engine) as s:
        rankings = s.exec(select(Ranking)).all()
        superseded = s.exec(select(SupersededRanking)).all()
    assert len(rankings) == 1 and len(superseded) == 1
    (now,), (before,) = rankings, superseded
    by_rank = lambda ranks: [int(k) for k, _ in sorted(ranks.items(), key=lambda kv: kv[1])]  # noqa: E731
    shown = by_rank(now.ranks)[::-1]  # the answers' ids in display order (the re-rank was 4 > 3 > 2 > 1)
    assert by_rank(before.ranks) == [shown[2], shown[0], shown[3], shown[1]]  # the first one, 3 > 1 > 4 > 2

    # "Layout" puts the answers one under another on a wide screen, and back
    page.set_viewport_size({"width": 1280, "height": 800})
    side = [page.locator(f"#answer-{i}").bounding_box() for i in (0, 1)]
    page.locator("#ranker .rl-layout").click()
    page.locator(".rl-stacked .rl-cards").wait_for(timeout=5_000)
    stacked = [page.locator(f"#answer-{i}").bounding_box() for i in (0, 1)]
    assert (
        side[0]["x"] != side[1]["x"]
        and stacked[0]["x"] == stacked[1]["x"]
        and stacked[1]["y"] > stacked[0]["y"]
    )


def test_admin_sees_live_numeric_plots_a_new_version_without_reload_and_downloads_an_export(
    running_app, browser, tmp_path
):
    import zipfile

    from datasets import load_dataset

    from labeler.store.leasing import lease_next_set
    from labeler.store.store import RankingIn, submit_ranking
    from labeler.store.tables import Job, PolicyVersion, RewardModel, User, id_of, utcnow

    def points(steps):
        return [
            {"step": k, "reward": 0.1 * k, "gold": 0.05 * k, "kl": 0.2 * k, "phase": "ppo"} for k in steps
        ]

    with Session(running_app.engine) as s:
        alice = s.exec(select(User).where(User.name == "alice")).one()
        for i in range(2):  # two ranked sets, so the export has pairs
            leased = lease_next_set(session=s, user_id=id_of(alice))
            ranks = {id_of(c): k + 1 for k, c in enumerate(leased.completions)}
            submit_ranking(
                session=s, ranking=RankingIn(id_of(leased.set), id_of(alice), f"r{i}", ranks=ranks)
            )
        job = Job(kind="ppo", status="running", phase="ppo", phase_started_at=utcnow(), started_at=utcnow(), progress=0.3, metrics=points(range(1, 4)))  # fmt: skip
        s.add(job)
        s.add(RewardModel(name="r1", base_model="tiny", accuracy=0.65, heldout_sets=4))  # one point to plot
        s.commit()
        job_id = id_of(job)

    admin = log_in(browser, running_app.url, "admin", PASSWORDS["admin"])
    admin.locator("#dashboard-summary").wait_for(state="visible", timeout=20_000)
    admin.get_by_role("tab", name="Training").click()
    # the watched job's progress is on the first screen, above the launch forms
    admin.locator("#job-progress progress").wait_for(timeout=15_000)
    bar = admin.locator("#job-progress progress").bounding_box()
    assert bar is not None and bar["y"] + bar["height"] <= admin.viewport_size["height"], bar
    # each launch form says how long it would take here (no job ran yet: the default rates)
    admin.get_by_text("Run a whole round (reward model, then PPO or DPO)").click()
    admin.wait_for_function("document.querySelector('#estimate-round')?.textContent.includes('About')")
    assert "DPO" in admin.locator("#estimate-round").text_content()
    # the reward panel, read from the chart Vega rendered: a linear (numeric) y axis and two series
    reward_plot = "#job-plot-2"
    admin.locator(f"{reward_plot} [aria-label^='Y-axis']").wait_for(timeout=20_000)
    y_axis = admin.locator(f"{reward_plot} [aria-label^='Y-axis']").get_attribute("aria-label")
    legend = admin.locator(f"{reward_plot} [aria-label*='legend']").get_attribute("aria-label")
    assert "linear scale" in y_axis and "with 2 values" in legend, (y_axis, legend)
    # the legend names its series, on screen inside the panel (a fixed height once cut the names off)
    panel = admin.locator(reward_plot).bounding_box()
    labels = admin.locator(f"{reward_plot} .role-legend-label text")
    assert sorted(labels.nth(k).text_content() or "" for k in range(labels.count())) == ["gold", "reward"]
    for k in range(2):
        box = labels.nth(k).bounding_box()
        assert (
            box
            and panel
            and panel["y"] <= box["y"]
            and box["y"] + box["height"] <= panel["y"] + panel["height"]
        )
    # one reward model: a single point drawn as a marker, its value in words under the plot
    admin.locator("#reward-trend .role-mark path").first.wait_for(timeout=15_000)
    assert "Latest (reward model 1): accuracy 0.65" in admin.locator("#reward-trend").inner_text()
    # the job logs more steps: the plot follows without a reload
    with Session(running_app.engine) as s:
        job = s.get(Job, job_id)
        job.metrics = points(range(1, 9))
        s.add(job)
        s.commit()
    admin.locator(f"{reward_plot} [aria-label*='values from 1 to 8']").wait_for(timeout=15_000)
    admin.screenshot(path=tmp_path / "training.png", full_page=True)

    # a new policy version appears in the Policies tab on its own
    admin.get_by_role("tab", name="Policies").click()
    versions = admin.locator("#policy-versions")
    versions.get_by_text("v0", exact=True).filter(visible=True).first.wait_for(timeout=15_000)
    with Session(running_app.engine) as s:
        v0 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 0)).one()
        s.add(PolicyVersion(version=1, base_model="tiny", parent_id=v0.id))
        s.commit()
    versions.get_by_text("v1", exact=True).filter(visible=True).first.wait_for(
        timeout=25_000
    )  # the tab refreshes every 10 s

    # an export is downloaded from the browser and loads with datasets
    admin.get_by_role("tab", name="Export").click()
    admin.locator("#export-summary").get_by_text("Preview of the first rows").wait_for(timeout=10_000)
    admin.get_by_role("radio", name="jsonl").check()
    admin.get_by_role("button", name="Export", exact=True).click()
    link = admin.locator("#export-summary a")
    link.wait_for(timeout=30_000)
    with admin.expect_download() as download:
        link.click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "export")
    pairs = load_dataset("json", data_files=str(tmp_path / "export" / "preferences.jsonl"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names) and len(pairs) == 12  # 6 pairs per set


def test_a_changed_ranking_from_a_second_tab_is_refused_not_reported_saved(running_app, browser):
    """Two tabs on one set: the first submit is saved; the second, with other ranks, is refused with a sentence
    that points to "Undo last submit", and the stored ranking is the first one."""
    first = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    first.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    second = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    second.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    assert first.locator("#prompt").inner_text() == second.locator("#prompt").inner_text()
    for page, keys in ((first, "1234"), (second, "4321")):
        for key in keys:
            page.keyboard.press(key)
    first.keyboard.press("Enter")
    first.get_by_text("Saved.").wait_for(timeout=15_000)
    second.keyboard.press("Enter")
    second.get_by_text("Not submitted").wait_for(timeout=15_000)
    assert "Undo last submit" in second.locator("#status").inner_text()
    assert second.get_by_text("Saved.").count() == 0
    with Session(running_app.engine) as s:
        [stored] = s.exec(select(Ranking)).all()
    by_rank = sorted(stored.ranks, key=lambda cid: stored.ranks[cid])
    with Session(running_app.engine) as s:
        from labeler.store.tables import Assignment

        lease = s.exec(select(Assignment).where(Assignment.set_id == stored.set_id)).first()
    assert lease is not None and [int(c) for c in by_rank] == list(
        lease.display_order
    )  # tab one's 1 > 2 > 3 > 4


def test_a_labeler_edits_an_answer_and_writes_one_then_browse_and_export_show_them(
    running_app, browser, tmp_path
):
    """Edit answer 2 in its card, rank, submit: the edit is stored as a completion ranked just above answer 2;
    on the next set, "none acceptable" with an answer written from scratch; Browse shows the edit's diff; the
    export holds the edit as chosen and both in the SFT file."""
    import json

    from labeler.io.export import export_preferences
    from labeler.store.tables import Completion

    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    page.locator("#answer-1 .rl-edit").click()
    box = page.locator("#answer-1 textarea.rl-editor")
    box.wait_for(timeout=5_000)
    box.fill("A careful, corrected <b>answer</b>.")
    page.locator("#answer-1 .rl-edit-done").click()
    page.locator("#answer-1 .rl-edited").wait_for(timeout=5_000)
    assert "<b>answer</b>" in page.locator("#answer-1 .rl-edit-text").inner_text()  # shown as typed, inert
    for key in "2134":
        page.keyboard.press(key)
    page.wait_for_function("document.querySelector('#ranker .rl-order').innerText === '2 > 1 > 3 > 4'")
    page.screenshot(path=tmp_path / "edited.png", full_page=True)
    first_prompt = page.locator("#prompt").inner_text()
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    page.wait_for_function(f"document.querySelector('#prompt').innerText !== {first_prompt!r}")

    page.locator("#ranker .rl-write").click()
    page.locator("#answer-written textarea").fill("My own answer, since none of these will do.")
    page.locator("#answer-written .rl-edit-done").click()
    page.locator("#answer-written .rl-edit-text").wait_for(timeout=5_000)
    page.locator("#none-acceptable input").check()
    page.locator("#submit-btn").click()
    page.get_by_text("Saved.").wait_for(timeout=15_000)

    first, second = stored_rankings(running_app.engine, 2)
    with Session(running_app.engine) as s:
        edit, written = s.exec(
            select(Completion).where(Completion.origin == "edit").order_by(Completion.id)
        ).all()
        from labeler.store.tables import Assignment

        lease = s.exec(select(Assignment).where(Assignment.set_id == first.set_id)).one()
    shown = lease.display_order
    assert edit.text == "A careful, corrected <b>answer</b>." and edit.source_id == shown[1]
    assert edit.edit_seconds is not None and edit.edit_seconds >= 0
    ranks = {int(k): v for k, v in first.ranks.items()}
    assert ranks[edit.id] == 1 and ranks[shown[1]] == 2 and ranks[shown[0]] == 3
    assert written.source_id is None and second.none_acceptable
    assert {int(k): v for k, v in second.ranks.items()}[written.id] == 1

    admin = log_in(browser, running_app.url, "admin", PASSWORDS["admin"])
    admin.locator("#dashboard-summary").wait_for(state="visible", timeout=20_000)
    admin.get_by_role("tab", name="Browse").click()
    admin.get_by_label("Set number (or click a row above)").fill(str(first.set_id))
    admin.get_by_role("button", name="Open set").click()
    admin.locator("#set-detail ins").first.wait_for(timeout=15_000)
    assert "edit of answer" in admin.locator("#set-detail").inner_text()
    assert admin.locator("#set-detail b").count() == 0  # the labeler's markup stays text
    admin.screenshot(path=tmp_path / "browse-edit.png", full_page=True)

    with Session(running_app.engine) as s:
        result = export_preferences(session=s, out=tmp_path / "export", fmt="jsonl")
    rows = [json.loads(x) for x in (tmp_path / "export" / "preferences.jsonl").read_text().splitlines()]
    assert any(r["chosen"][0]["content"] == edit.text and r["chosen_origin"] == "edit" for r in rows)
    sft = [json.loads(x) for x in (tmp_path / "export" / "sft.jsonl").read_text().splitlines()]
    assert {r["completion"][0]["content"] for r in sft} >= {edit.text, written.text}
    assert result.sft == len(sft) and {r["set_id"] for r in sft} >= {first.set_id, second.set_id}


def test_a_labeler_accepts_a_judges_suggestion_with_one_key_and_changes_the_next(
    running_app, browser, tmp_path
):
    """A rule judge ranked every set and suggestions are on: the page shows its order, A accepts it as it is;
    on the next set the labeler accepts by the button, then ranks otherwise. The stats count one of each."""
    from labeler.labels.judges import add_judge, judge_waiting_sets
    from labeler.labels.suggestion_stats import suggestion_stats
    from labeler.store.suggestions import set_suggestions

    with Session(running_app.engine) as s:
        add_judge(
            session=s, name="digits", kind="rules", config={"rules": "ends with: .3\nmust match: \\.[23]$"}
        )
        set_suggestions(session=s, judge="digits", share=1.0)
    assert judge_waiting_sets(running_app.engine) == 6
    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    line = page.locator("#ranker .rl-suggested")
    line.wait_for(timeout=20_000)
    assert line.inner_text().startswith("Suggested by digits:")
    hint = page.locator("#ranker .rl-suggested .rl-order").inner_text()
    page.screenshot(path=tmp_path / "suggested.png", full_page=True)
    page.keyboard.press("a")
    page.wait_for_function("!document.querySelector('#ranker .rl-suggested')")
    assert page.locator("#ranker .rl-order").inner_text() == hint
    first_prompt = page.locator("#prompt").inner_text()
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    page.wait_for_function(f"document.querySelector('#prompt').innerText !== {first_prompt!r}")
    page.locator("#ranker .rl-accept").click()
    page.locator("#ranker .rl-clear").click()
    for key in "1234":
        page.keyboard.press(key)
    page.wait_for_function("document.querySelector('#ranker .rl-order').innerText === '1 > 2 > 3 > 4'")
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    stored_rankings(running_app.engine, 8)  # the judge's 6 and alice's 2
    with Session(running_app.engine) as s:
        st = suggestion_stats(session=s)
    assert (st.shown, st.accepted, st.changed) == (2, 1, 1)


def test_a_labeler_writes_the_next_message_and_a_second_labeler_ranks_the_next_turn(
    running_app, browser, tmp_path
):
    """Conversations on: Alice ranks her set and writes the user's next message; the generator continues the
    conversation from her first-ranked answer; Bob gets that turn with the earlier turns folded and ranks it;
    the admin's Conversations tab shows the tree."""
    from labeler.labels.conversations import set_conversations
    from labeler.store.leasing import lease_next_set
    from labeler.store.store import RankingIn, submit_ranking
    from labeler.store.tables import Prompt, id_of
    from models.generation import SamplingParams
    from models.policy import PolicyPool
    from models.tiny import tiny_model_and_tokenizer
    from rlhf.serve.pregen import PregenConfig, PregenWorker

    with Session(running_app.engine) as s:
        set_conversations(session=s, default="labeler", depth=3)
    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    for key in "2134":
        page.keyboard.press(key)
    box = page.locator("#follow-up textarea")
    box.wait_for(state="visible", timeout=5_000)
    box.fill("Tell me more about that one.")
    page.locator("#submit-btn").click()
    page.get_by_text("Saved.").wait_for(timeout=15_000)
    [alices] = stored_rankings(running_app.engine, 1)
    assert alices.follow_up == "Tell me more about that one."

    with Session(
        running_app.engine
    ) as s:  # Bob clears the other first turns, so the next set he gets is turn 2
        bob = s.exec(select(Ranking.user_id)).first()
        from labeler.store.users import get_user

        bob_id = id_of(get_user(session=s, name="bob"))
        while (leased := lease_next_set(session=s, user_id=bob_id)) is not None:
            ranks = {id_of(c): i + 1 for i, c in enumerate(leased.completions)}
            submit_ranking(session=s, ranking=RankingIn(id_of(leased.set), bob_id, f"b-{id_of(leased.set)}", ranks=ranks))  # fmt: skip
    assert bob is not None
    # buffer 2: the set on Alice's page after her submit still waits, leased to her
    config = PregenConfig(buffer=2, n=3, batch_prompts=1, sampling=SamplingParams(max_new_tokens=6, seed=0))
    worker = PregenWorker(
        engine=running_app.engine, pool=PolicyPool(*tiny_model_and_tokenizer()), config=config
    )
    assert worker.step() == 1  # the conversation continued, and its next turn got a set first
    with Session(running_app.engine) as s:
        second = s.exec(select(Prompt).where(Prompt.turn == 2)).one()

    bobs = log_in(browser, running_app.url, "bob", PASSWORDS["bob"])
    bobs.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    prompt = bobs.locator("#prompt")
    assert "Tell me more about that one." in prompt.inner_text()
    assert bobs.locator("#prompt details.rl-earlier").count() == 1  # the first turn folded
    assert not bobs.locator("#prompt details.rl-earlier").evaluate("d => d.open")
    bobs.screenshot(path=tmp_path / "second-turn.png", full_page=True)
    for key in "123":
        bobs.keyboard.press(key)
    bobs.locator("#submit-btn").click()
    bobs.get_by_text("Saved.").wait_for(timeout=15_000)
    with Session(running_app.engine) as s:
        assert s.exec(select(Ranking).join(Prompt, col(Prompt.id) == second.id)).first() is not None

    admin = log_in(browser, running_app.url, "admin", PASSWORDS["admin"])
    admin.locator("#dashboard-summary").wait_for(state="visible", timeout=20_000)
    admin.get_by_role("tab", name="Conversations").click()
    admin.get_by_label("A prompt id of the conversation").fill(str(second.id))
    admin.get_by_role("button", name="Show its tree").click()
    admin.locator("#conversation-tree").get_by_text("Turn 2, prompt").wait_for(timeout=15_000)
    assert "Tell me more about that one." in admin.locator("#conversation-tree").inner_text()


def test_enter_in_the_comment_submits_shift_enter_breaks_the_line_and_the_limit_shows(running_app, browser):
    page = log_in(browser, running_app.url, "alice", PASSWORDS["alice"])
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    for i in range(4):
        page.locator(f"#answer-{i}").click()
    box = page.locator("#comment textarea, #comment input").first
    box.click()
    box.type("too long")
    box.press("Shift+Enter")
    box.type("by half")
    page.locator("#comment .rl-count").wait_for(timeout=5_000)
    assert page.locator("#comment .rl-count").inner_text() == "16 / 2000 characters"
    assert page.locator("#ranker .rl-order").inner_text() == "1 > 2 > 3 > 4"  # typing ranked nothing
    box.press("Enter")
    [saved] = stored_rankings(running_app.engine, 1)
    assert saved.comment == "too long\nby half" and sorted(saved.ranks.values()) == [1, 2, 3, 4]


def test_a_phone_ranks_with_a_tie_by_touch_alone_and_submits_without_scrolling_back(
    running_app, browser, tmp_path
):
    phone = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
    page = log_in(browser, running_app.url, "bob", PASSWORDS["bob"], **phone)
    page.locator("#answer-0").wait_for(state="visible", timeout=20_000)
    # a first visit: the guidelines are open, in a box of their own that says the set is below; the prompt and
    # the first answer's start are on the first screen
    assert page.locator("#guidelines .rl-below").is_visible()
    page.evaluate("window.scrollTo(0, 0)")
    first = page.locator("#answer-0").bounding_box()
    assert first is not None and first["y"] < 844 - 130, first  # above the action bar
    assert page.locator("#prompt").bounding_box()["y"] < first["y"]
    # one column of full-width cards
    boxes = [page.locator(f"#answer-{i}").bounding_box() for i in range(4)]
    assert len({b["x"] for b in boxes}) == 1 and all(b["width"] > 280 for b in boxes), boxes

    def tap(selector: str) -> None:  # into the middle of the screen first: the sticky bar covers the bottom
        page.locator(selector).evaluate("e => e.scrollIntoView({block: 'center'})")
        page.locator(selector).tap()

    tap("#answer-0 .rl-body")  # the answer's text (its head holds Edit and the flag menu)
    tap("#ranker .rl-tie")  # the next answer ties with the last one ranked
    tap("#answer-2 .rl-body")
    tap("#answer-3 .rl-body")
    tap("#answer-1 .rl-body")
    page.wait_for_function("document.querySelector('#ranker .rl-order')?.innerText === '1 = 3 > 4 > 2'")
    # at the last answer the order and the three actions are still on screen
    page.locator("#answer-3").scroll_into_view_if_needed()
    summary, submit = (
        page.locator("#ranker .rl-summary").bounding_box(),
        page.locator("#submit-btn").bounding_box(),
    )
    assert summary is not None and summary["y"] >= 0 and summary["y"] + summary["height"] <= 844, summary
    assert submit is not None and submit["y"] + submit["height"] <= 844, submit
    bar = page.locator("#action-bar").bounding_box()
    assert bar is not None and bar["height"] <= 0.16 * 844, bar
    assert page.locator("#none-acceptable").inner_text().strip() == "None acceptable"
    page.screenshot(path=tmp_path / "phone-ranked.png")
    page.locator("#submit-btn").tap()
    [saved] = stored_rankings(running_app.engine, 1)
    assert sorted(saved.ranks.values()) == [1, 1, 2, 3]
