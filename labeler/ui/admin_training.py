"""Admin training tab: launch jobs (a round, reward, PPO, DPO) from forms made from the stage configs, watch one:
a progress bar with its stage and time left, one live plot per kind of metric (labeler/ui/job_view.py), its
evaluation and the log's newest lines; cancel it; the jobs table and the reward models with their evaluation."""

from __future__ import annotations

from typing import Any, cast

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.labels.stats import training_data
from labeler.records.job_rows import get_job, recent_jobs
from labeler.records.reward_models import RewardFigures, reward_models
from labeler.store.db import read_session
from labeler.store.tables import Job
from labeler.ui.background import COLUMNS as BACKGROUND_COLUMNS
from labeler.ui.background import background_view, busy_note, job_rate
from labeler.ui.deps import TabLoad, UIDeps, require_admin
from labeler.ui.forms import PRESETS, ROUND_DEFAULT_PRESET, config_form, form_values, preset_values
from labeler.ui.job_view import PANEL_SLOTS, PANELS, evaluation_note, log_html, metric_panels, progress_html
from labeler.ui.plots import series_plot, trend_plot, with_caption
from rlhf.serve.estimate import estimate_job
from rlhf.train.configs import JOB_KINDS, STAGES, job_config


def jobs_frame(session: Session) -> pd.DataFrame:
    jobs = recent_jobs(session=session, limit=50)
    rows = [
        [
            j.id,
            j.kind,
            j.status,
            f"{j.progress:.0%}",
            j.created_at.strftime("%m-%d %H:%M"),
            (j.error or "").splitlines()[0][:200] if j.error else "",
        ]
        for j in jobs
    ]
    return pd.DataFrame(rows, columns=["job", "kind", "status", "progress", "created", "error"])


def rewards_frame(session: Session) -> pd.DataFrame:
    """One row per reward model; held-out figures only where it had held-out sets (else the split is named)."""
    rows = []
    for r in reward_models(session=session, newest_first=True):
        figures, held = RewardFigures.of(r), r.heldout_sets
        rows.append(
            [
                r.name,
                r.job_id,
                r.accuracy,
                f"held-out ({held} sets)" if held else "training sets (no held-out)",
                figures.mean_margin,
                figures.loss,
                figures.pairs,
                str(figures.accuracy_by_agreement),
                figures.suspects,
            ]
        )
    return pd.DataFrame(
        rows,
        columns=[
            "reward model",
            "job",
            "held-out accuracy",
            "evaluated on",
            "mean margin",
            "loss",
            "pairs",
            "accuracy by agreement",
            "hacking suspects",
        ],
    )


def review_frame(session: Session) -> pd.DataFrame:
    """The reward-hacking review list: answers the newest reward model scores first in their set although
    labelers flagged them or ranked them last (labeler/labels/hacking.py), widest margins first; then those of the
    models it continued (`continue_from`: each reviewed the sets it met first), newest first."""
    models = reward_models(session=session, newest_first=True)
    by_name = {m.name: m for m in models}
    rows, model, visited = [], models[0] if models else None, set()
    while model is not None and model.name not in visited:
        visited.add(model.name)
        for i in RewardFigures.of(model).review:
            rows.append(
                [model.name, i["set_id"], i["prompt"][:200], i["text"][:400], i["why"], round(i["margin"], 3)]
            )
        model = by_name.get(model.continued_from or "")
    return pd.DataFrame(rows, columns=["reward model", "set", "prompt", "answer", "why", "margin over next"])


def reward_trend(session: Session) -> pd.DataFrame:
    """Held-out accuracy and mean margin of each reward model, oldest first, for comparing rounds (a model
    without held-out sets has no accuracy to plot)."""
    rows = []
    for number, r in enumerate(reward_models(session=session, newest_first=False), 1):
        for key, value in (("accuracy", r.accuracy), ("mean_margin", RewardFigures.of(r).mean_margin)):
            if value is not None:
                rows.append((number, key, value))
    return pd.DataFrame(rows, columns=["reward model", "metric", "value"])


def overopt_frame(job: Job | None) -> pd.DataFrame:
    """PPO's proxy (reward-model score) and gold score against KL to the reference, for jobs with a gold judge:
    the gold curve turning down while the proxy keeps rising is over-optimisation."""
    rows: list[tuple[float, str, float]] = []
    for point in job.metrics if job else []:
        if isinstance(point.get("gold"), int | float) and isinstance(point.get("kl"), int | float):
            rows.append((float(point["kl"]), "proxy (reward model)", float(point["reward"])))
            rows.append((float(point["kl"]), "gold", float(point["gold"])))
    return pd.DataFrame(rows, columns=["kl", "score", "value"])


def build_training_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Training"):
        launch_status = gr.Markdown()
        with gr.Row():
            job_id = gr.Number(label="Job to watch", precision=0)
            cancel = gr.Button("Cancel job", variant="stop")
        progress = gr.HTML(progress_html(None), elem_id="job-progress")
        background_note = gr.Markdown(elem_id="training-background-warning")
        background = gr.Dataframe(
            headers=BACKGROUND_COLUMNS,
            label="Background processes (CPU share and rate over the last minute)",
            interactive=False,
        )
        evaluation = gr.Markdown(elem_id="job-evaluation")
        plots = []
        for row in range(0, PANEL_SLOTS, 3):
            with gr.Row():
                plots += [
                    series_plot("step", title, elem_id=f"job-plot-{row + i}")
                    for i, (title, _) in enumerate(PANELS[row : row + 3])
                ]
        gr.Markdown("**Launch a job** (the job's progress and plots show above once it starts)")
        forms, buttons, estimates, folds = {}, {}, {}, {}
        presets, apply = {}, {}
        for kind in JOB_KINDS:
            with gr.Accordion(STAGES[kind].title, open=False) as folds[kind]:
                if kind in PRESETS:
                    with gr.Row():
                        shown = ROUND_DEFAULT_PRESET if kind == "round" else None  # the form starts at it
                        presets[kind] = gr.Dropdown(list(PRESETS[kind]), value=shown, label="Preset", scale=3)
                        apply[kind] = gr.Button("Fill the form", scale=1)
                forms[kind] = config_form(job_config(kind), kind=kind)
                estimates[kind] = gr.Markdown(elem_id=f"estimate-{kind}")
                buttons[kind] = gr.Button(f"Start {kind}", variant="primary")
        overopt_plot = series_plot(
            "kl", "Proxy vs gold score against KL (PPO with a gold judge)", color="score", legend="score"
        )
        gr.Markdown("**Log (newest line last)**")
        log = gr.HTML(log_html(""), elem_id="job-log")
        jobs = gr.Dataframe(label="Jobs", interactive=False)
        rewards = gr.Dataframe(label="Reward models (held-out evaluation)", interactive=False)
        review = gr.Dataframe(
            label="Reward-hacking review: answers the newest reward model ranks first that labelers rejected",
            interactive=False,
            wrap=True,
        )
        reward_plot = trend_plot(
            "reward model",
            "Reward models across rounds",
            color="metric",
            legend="metric",
            elem_id="reward-trend",
        )
        timer = gr.Timer(2.0, active=False)  # switched on at page load for admins only

    def read_history() -> tuple:
        with read_session(engine) as session:
            return training_data(session=session), recent_jobs(session=session, limit=50)

    def estimate_text(kind: str, values: tuple, known: tuple | None = None) -> str:
        """The form's duration estimate, or what is wrong with its values (rlhf/serve/estimate.py); `known`: the
        store's (training data, recent jobs) when the caller has read them already."""
        try:
            params = form_values(job_config(kind), list(forms[kind]), values)
        except (ValueError, TypeError) as exc:
            return f"**Check the form:** {exc}"
        data, history = known or read_history()
        return estimate_job(kind, params, data=data, history=history).text() + busy_note(deps.monitor)

    def launcher(kind: str):
        def on_launch(request: gr.Request, *values):
            require_admin(engine, request)
            try:
                params = form_values(job_config(kind), list(forms[kind]), values)
                if deps.runner is None:
                    raise RuntimeError("This app was started without a job runner.")
                new_id = deps.runner.start(kind, params)
            except (ValueError, TypeError, RuntimeError) as exc:
                raise gr.Error(str(exc)) from exc
            return f"Started {kind} job {new_id}. {estimate_text(kind, values)}", new_id

        return on_launch

    def estimator(kind: str):
        def on_estimate(request: gr.Request, *values) -> str:
            require_admin(engine, request)
            return estimate_text(kind, values)

        return on_estimate

    def on_watch(request: gr.Request, watched: float | None):
        require_admin(engine, request)
        with read_session(engine) as session:
            job = get_job(session=session, job_id=int(watched) if watched else None)
            panels = [gr.update(value=frame, label=title) for title, frame in metric_panels(job)]
            frame, note = background_view(deps.monitor)
            return (
                progress_html(job, rate=job_rate(deps.monitor, job.pid if job else None)),
                evaluation_note(job),
                *panels,
                overopt_frame(job),
                log_html((job.log_tail or "") + (f"\n{job.error}" if job.error else ""))
                if job
                else log_html(""),
                jobs_frame(session),
                rewards_frame(session),
                review_frame(session),
                with_caption(reward_trend(session), "reward model", "metric"),
                note,  # last: the API's earlier outputs keep their places
                frame,
            )

    def on_cancel(request: gr.Request, watched: float | None):
        require_admin(engine, request)
        if not watched or deps.runner is None:
            raise gr.Error("Enter the job number to cancel.")
        try:
            deps.runner.cancel(int(watched))
        except RuntimeError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Cancelled job {int(watched)}."

    def filler(kind: str):
        def on_preset(request: gr.Request, preset: str | None):
            require_admin(engine, request)
            if not preset:
                raise gr.Error("Choose a preset first.")
            try:
                return preset_values(kind, preset, forms[kind])
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc

        return on_preset

    for kind, button in apply.items():
        button.click(
            filler(kind), [presets[kind]], list(forms[kind].values()), api_name=f"admin_preset_{kind}"
        )
    for kind, button in buttons.items():
        button.click(
            launcher(kind),
            list(forms[kind].values()),
            [launch_status, job_id],
            api_name=f"admin_launch_{kind}",
        ).success(  # the form folds away: the watched job's progress is at the top of the tab
            lambda: gr.Accordion(open=False), None, folds[kind], api_visibility="private", queue=False
        )
    for kind, form in forms.items():
        gr.on(
            [cast(Any, c).change for c in form.values()],
            estimator(kind),
            list(form.values()),
            estimates[kind],
            api_name=f"admin_estimate_{kind}",
            show_progress="hidden",
        )
    watch_outputs = [
        progress,
        evaluation,
        *plots,
        overopt_plot,
        log,
        jobs,
        rewards,
        review,
        reward_plot,
        background_note,  # last: the API's earlier outputs keep their places
        background,
    ]
    timer.tick(on_watch, [job_id], watch_outputs, api_name="admin_jobs", show_progress="hidden")
    cancel.click(on_cancel, [job_id], launch_status, api_name="admin_cancel_job")

    def on_list(request: gr.Request):
        known = read_history()  # one read for every form's estimate
        defaults = [
            estimate_text(kind, tuple(c.value for c in form.values()), known) for kind, form in forms.items()
        ]
        return (*on_watch(request, None), *defaults, gr.Timer(active=True))

    return TabLoad(on_list, [*watch_outputs, *estimates.values(), timer])
