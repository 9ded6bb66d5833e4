"""What the training tab shows of a job: one plot per kind of metric with a numeric axis (also while empty), series
named by stage in a round, a progress line with the stage and time left, the evaluation's split, and a log tail
that ends at its newest line."""

from __future__ import annotations

from datetime import timedelta

from labeler.store.tables import Job, utcnow
from labeler.ui.job_view import (
    PANEL_SLOTS,
    clean_log,
    evaluation_note,
    log_html,
    metric_panels,
    progress_text,
)

ROUND_POINTS = [
    {"step": 1, "loss": 0.69, "accuracy": 0.5, "phase": "reward training", "t": 1.0},
    {"step": 2, "loss": 0.61, "accuracy": 0.75, "phase": "reward training", "t": 2.0},
    {"accuracy": 0.71, "loss": 0.58, "heldout_sets": 12, "phase": "reward evaluation and saving"},
    {"step": 1, "reward": 0.1, "kl": 0.0, "kl_coef": 0.05, "policy_loss": -0.01, "response_length": 40.0,
     "entropy": 2.1, "early_stopped": False, "updates": 4, "phase": "ppo"},
    {"step": 2, "reward": 0.3, "kl": 1.2, "kl_coef": 0.05, "policy_loss": -0.02, "response_length": 31.0,
     "entropy": 2.0, "early_stopped": True, "updates": 2, "phase": "ppo"},
]  # fmt: skip


def test_each_kind_of_metric_gets_its_own_numeric_plot_with_series_named_by_stage():
    panels = metric_panels(Job(kind="round", metrics=ROUND_POINTS))
    assert len(panels) == PANEL_SLOTS
    by_title = {title.split(",")[0]: frame for title, frame in panels}
    for frame in by_title.values():
        assert str(frame["value"].dtype) == "float64" and str(frame["step"].dtype) == "float64"
    assert set(by_title["Loss"]["series"]) == {"reward training: loss", "ppo: policy_loss"}
    assert set(by_title["Accuracy"]["series"]) == {"reward training: accuracy"}  # not the held-out figure
    assert set(by_title["Reward (proxy and gold)"]["series"]) == {"ppo: reward"}
    assert set(by_title["KL to the reference"]["series"]) == {"ppo: kl", "ppo: kl_coef"}
    assert by_title["Response length (tokens)"]["value"].tolist() == [40.0, 31.0]
    assert set(by_title["Other"]["series"]) == {"ppo: entropy"}  # flags and counts are not plotted
    assert all(title.endswith("training batches") for title, _ in panels)


def test_one_stage_keeps_plain_names_and_an_empty_job_still_has_numeric_axes():
    panels = metric_panels(Job(kind="reward", metrics=ROUND_POINTS[:2]))
    assert set(panels[0][1]["series"]) == {"loss"}
    for _, frame in metric_panels(None):
        assert frame.empty and str(frame["value"].dtype) == "float64"


def test_progress_names_the_stage_and_the_time_left_and_flips_when_the_job_ends():
    now = utcnow()
    running = Job(id=3, kind="round", status="running", progress=0.25, phase="ppo",
                  phase_started_at=now - timedelta(minutes=2), started_at=now - timedelta(minutes=9))  # fmt: skip
    assert progress_text(running, now) == "Job 3 (round) · running · ppo · 25% · about 6 min left"
    running.progress = 1.0
    assert progress_text(running, now).endswith("· finishing (evaluating and saving)")
    done = Job(id=3, kind="round", status="succeeded", progress=1.0, started_at=now - timedelta(minutes=9),
               finished_at=now)  # fmt: skip
    assert progress_text(done, now) == "Job 3 (round) · succeeded in 9 min"
    assert (
        progress_text(Job(id=4, kind="ppo", status="queued"), now)
        == "Job 4 (ppo) · queued · waiting to start"
    )
    assert progress_text(None) == "No job yet."


def test_the_evaluation_says_which_split_it_was_measured_on():
    assert evaluation_note(Job(kind="round", metrics=ROUND_POINTS)).startswith(
        "**Evaluation (held-out, 12 sets):**"
    )
    none_held = [{"accuracy": 0.4, "loss": 0.7, "heldout_sets": 0}]
    assert "training sets: no held-out sets" in evaluation_note(Job(kind="reward", metrics=none_held))
    assert evaluation_note(Job(kind="ppo", metrics=ROUND_POINTS[3:])) == ""


def test_a_dpo_round_shows_its_implicit_reward_accuracy_and_the_gates_verdict():
    final = {"heldout_accuracy": 0.684, "heldout_sets": 21, "heldout_pairs": 98, "loss": 0.5}
    gate = {"decision": "pass", "lines": ["held-out accuracy 0.684: above chance", "KL 3.7 within 4"]}
    note = evaluation_note(Job(kind="round", params={"result": {"metrics": final, "gate": gate}}))
    assert note.startswith("**Evaluation (held-out, 21 sets, 98 pairs):** implicit-reward accuracy 0.684")
    assert "**Gate: pass**" in note and "- KL 3.7 within 4" in note
    nothing = {"heldout_accuracy": float("nan"), "heldout_sets": 0}
    assert evaluation_note(Job(kind="dpo", params={"result": {"metrics": nothing}})) == (
        "**Evaluation:** none (no held-out sets ranked yet)"
    )


def test_the_log_tail_folds_progress_bars_and_ends_at_the_newest_line():
    log = (
        "loading\nreward training:  10%|#\rreward training:  50%|###\rreward training: 100%|#####\n"
        + "\n".join(f"line {i}" for i in range(100))
    )
    tail = clean_log(log)
    assert tail.splitlines()[-1] == "line 99" and len(tail.splitlines()) == 60
    assert clean_log("a\rb 100%\nc") == "b 100%\nc"
    assert log_html("x < y\rdone").endswith("<pre>done</pre></div>")
