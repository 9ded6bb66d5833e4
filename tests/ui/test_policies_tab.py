"""The policies tab's data side: a version's human win-rate over its parent, from ranked mixed sets."""

from sqlmodel import Session

from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, get_or_add_prompt, submit_ranking
from labeler.store.tables import PolicyVersion
from labeler.store.users import add_user
from labeler.ui.admin_policies import versions_view


def test_versions_table_shows_the_human_win_rate_over_the_parent(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rankloop.db'}")
    with Session(engine) as s:
        v0 = ensure_initial_policy(session=s, base_model="tiny")
        v1 = PolicyVersion(version=1, base_model="tiny", parent_id=v0.id, is_current=True)
        s.add(v1)
        s.commit()
        labeler = add_user(session=s, name="ann", password="ann-password").id
        for i in range(10):
            prompt = get_or_add_prompt(session=s, messages=[{"role": "user", "content": f"q{i}"}])
            answers = [
                CompletionIn("new a", policy_version_id=v1.id),
                CompletionIn("new b", policy_version_id=v1.id),
            ]
            answers += [
                CompletionIn("old a", policy_version_id=v0.id),
                CompletionIn("old b", policy_version_id=v0.id),
            ]
            add_completion_set(session=s, prompt_id=prompt.id, completions=answers, policy_version_id=v1.id)
        for i in range(10):
            leased = lease_next_set(session=s, user_id=labeler)
            # the new version's answers first in 8 sets of 10
            ranks = {
                c.id: (1 if c.text.startswith("new") else 2) ^ (3 if i >= 8 else 0)
                for c in leased.completions
            }
            submit_ranking(session=s, ranking=RankingIn(leased.set.id, labeler, f"r{i}", ranks=ranks))
        frame, plot = versions_view(s)
    shown = dict(zip(frame["version"], frame["human win-rate vs parent"], strict=True))
    assert shown["v0"] == ""
    rate, interval = shown["v1"].split(" ", 1)
    assert float(rate) == 0.8 and "40 comparisons" in interval  # 4 new-vs-old pairs in each of 10 sets
    # the plot: one point per series for v1 (v0 has no parent), the interval around the rate, numeric axes
    assert sorted(plot["series"]) == ["95% high", "95% low", "win-rate"] and set(plot["version"]) == {1.0}
    values = dict(zip(plot["series"], plot["value"], strict=True))
    assert values["95% low"] < values["win-rate"] == 0.8 < values["95% high"]
    assert plot["value"].dtype == "float64" and plot["version"].dtype == "float64"


def test_samples_show_the_whole_conversation_and_escape_answers():
    from labeler.store.tables import PolicyVersion
    from labeler.ui.admin_policies import samples_html

    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another one?"},
    ]
    pv = PolicyVersion(
        version=2,
        base_model="tiny",
        metrics={
            "samples_before": [{"prompt": "Another one?", "messages": messages, "response": "Apple."}],
            "samples_after": [
                {"prompt": "Another one?", "messages": messages, "response": "<img src=x> Pear."}
            ],
        },
    )
    text = samples_html(pv)
    assert "Be brief." in text and "Name a fruit." in text and "Another one?" in text
    assert "<em>Before:</em></p><p>Apple.</p>" in text and "<img" not in text and "Pear." in text
    old_round = PolicyVersion(
        version=1, base_model="tiny", metrics={"samples_after": [{"prompt": "Hi", "response": "Hello"}]}
    )
    assert "Hi" in samples_html(old_round) and "(not recorded)" in samples_html(old_round)


def test_stored_answers_compare_two_versions_without_generating():
    from labeler.ui.admin_policies import stored_side_by_side

    v0 = PolicyVersion(id=1, version=0, base_model="tiny")
    v1 = PolicyVersion(id=2, version=1, base_model="tiny", parent_id=1, metrics={
        "samples_before": [{"prompt": "p1", "response": "v0 on p1"}, {"prompt": "p2", "response": "v0 on p2"}],
        "samples_after": [{"prompt": "p1", "response": "v1 on p1"}, {"prompt": "p2", "response": "v1 on p2"}],
    })  # fmt: skip
    v2 = PolicyVersion(id=3, version=2, base_model="tiny", parent_id=2, metrics={
        "samples_before": [{"prompt": "p1", "response": "v1 again on p1"}],
        "samples_after": [{"prompt": "p1", "response": "v2 on p1"}, {"prompt": "p3", "response": "v2 on p3"}],
    })  # fmt: skip
    frame = stored_side_by_side([v0, v1, v2], 0, 2)
    assert frame.values.tolist() == [["p1", "v0 on p1", "v2 on p1"]] and list(frame.columns)[1:] == [
        "v0",
        "v2",
    ]
    assert stored_side_by_side([v0, v1, v2], 1, 0).values.tolist() == [
        ["p1", "v1 on p1", "v0 on p1"],
        ["p2", "v1 on p2", "v0 on p2"],
    ]  # a version's own "after" samples win over a later round's "before" copy
    import pytest

    with pytest.raises(ValueError, match="no policy version v7"):
        stored_side_by_side([v0, v1], 0, 7)


def test_the_lineage_shows_each_versions_kl_from_v0_as_its_round_measured_it():
    from labeler.ui.admin_policies import kl_text

    fit = {"budget": 4.0, "kl_before": 5.6, "kl": 3.71, "scale": 0.82, "within": True}
    assert kl_text({"kl_budget": fit}) == "3.71 (budget 4, update x0.82)"
    toward_parent = {**fit, "scaled_toward": "parent"}  # only the round's own step was scaled back
    assert kl_text({"kl_budget": toward_parent}) == "3.71 (budget 4, round's update x0.82)"
    assert kl_text({"kl_budget": {**fit, "kl": 2.5, "scale": 1.0}}) == "2.50 (budget 4)"
    assert kl_text({"final": {"kl": 6.25, "loss": 0.1}}) == "6.25 (PPO rollouts)"
    assert kl_text({}) == "" and kl_text({"final": {"loss": 0.3}}) == ""


def test_the_gate_column_says_what_the_gate_decided_who_switched_and_a_lost_human_evaluation():
    from labeler.labels.winrate import WinRate
    from labeler.ui.admin_policies import gate_text, switch_text

    refused = {
        "gate": {"decision": "fail", "lines": ["gate: fail; kept as a candidate", "  [fail] KL from v0: 4.3"]}
    }
    assert (
        gate_text(PolicyVersion(version=3, base_model="m", metrics=refused, gate_decision="fail")) == "fail"
    )
    switched = {**refused, "switches": [{"by": "admin", "at": "2026-12-06T12:00:00", "gate": "fail"}]}
    made = PolicyVersion(version=3, base_model="m", metrics=switched, gate_decision="fail")
    assert gate_text(made) == "fail; made current by admin"
    losing = WinRate(wins=20, losses=60, ties=0, rate=0.25, low=0.17, high=0.36)
    blank = PolicyVersion(version=4, base_model="m")
    assert gate_text(blank, losing) == "loses to its parent in human evaluation: consider rolling back"
    shown = switch_text(made)
    assert shown.startswith("v3 is now current") and "- [fail] KL from v0: 4.3" in shown
