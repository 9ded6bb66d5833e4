"""Admin dashboard: sets, rankings, pairs, per-labeler counts, speed, agreement, gold scores and reliability
(labeler/labels/quality.py, with the labelers to review), flagged completions, and what each round's labels cost and
bought (labeler/labels/costs.py)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.labels.consensus import agreement
from labeler.labels.costs import RoundCost, round_costs
from labeler.labels.dataset import load_set_rankings, preference_records
from labeler.labels.quality import labeler_quality, weekly_trend
from labeler.labels.stats import flagged_completions, store_counts
from labeler.store.settings import get_setting
from labeler.ui.admin_judges import COLUMNS as JUDGE_COLUMNS
from labeler.ui.admin_judges import judge_table
from labeler.ui.background import COLUMNS as BACKGROUND_COLUMNS
from labeler.ui.background import background_view
from labeler.ui.deps import BackgroundValue, Snapshot, TabLoad, UIDeps, require_admin
from labeler.ui.plots import trend_plot, with_caption

LABELER_COLUMNS = [
    "labeler",
    "role",
    "disabled",
    "rankings",
    "skipped",
    "median s/set",
    "share < 5 s",
    "flag share",
    "tau vs consensus",
    "sets in tau",
    "tau vs others",
    "gold sets",
    "gold tau",
    "gold flags caught",
    "reliability",
    "review",
]
FLAG_COLUMNS = ["set", "completion", "reason", "labeler", "answer", "comment"]
REFRESH_SECONDS = 20.0
FIGURES_SECONDS = 60.0  # the store-wide figures (a pass over every ranking and two model fits) are this fresh
FIGURES_WAIT = 1.0  # a page waits this long for figures being computed, then shows the last ones
WEEK_COLUMNS = [
    "week",
    "labeler",
    "submissions (rankings and skips)",
    "median s/set",
    "skip share",
    "flag share",
    "tau vs others",
    "sets in tau",
]
ROUND_COLUMNS = [
    "round",
    "made version",
    "new labels",
    "human minutes",
    "reward model",
    "held-out accuracy",
    "accuracy gain (points)",
    "labels per accuracy point",
    "human win-rate vs parent",
    "win-rate 95% interval",
    "comparisons",
    "labels per win-rate point",
    "KL to reference",
]
ROUND_PANELS = [
    ("Reward-model held-out accuracy", "accuracy"),
    ("KL to the reference (end of PPO)", "KL"),
    ("Human win-rate vs parent (95% interval)", "win-rate"),
    ("Human minutes of labels", "minutes"),
]
PANEL_COLUMNS = ["round", "value", "series"]


def rounds_table(costs: list[RoundCost]) -> list[list]:
    """What each round's labels cost and bought (labeler/labels/costs.py), newest first."""
    rows = []
    for c in reversed(costs):
        interval = None if c.win_rate_interval is None else "{:.2f}-{:.2f}".format(*c.win_rate_interval)
        rows.append(
            [
                c.round_id,
                None if c.version is None else f"v{c.version}",
                c.new_labels,
                c.human_minutes,
                c.reward_model,
                _round(c.reward_accuracy),
                c.accuracy_gain,
                c.labels_per_accuracy_point,
                _round(c.win_rate),
                interval,
                c.comparisons,
                c.labels_per_win_point,
                _round(c.kl),
            ]
        )
    return rows


def round_panels(costs: list[RoundCost]) -> list[pd.DataFrame]:
    """One frame (round, value, series) per ROUND_PANELS entry, floats only so each plot has a numeric axis."""
    points: list[list[tuple[float, float, str]]] = [[] for _ in ROUND_PANELS]
    for c in costs:
        x = float(c.round_id)
        interval: tuple[float | None, float | None] = c.win_rate_interval or (None, None)
        values: list[list[tuple[float | None, str]]] = [
            [(c.reward_accuracy, "held-out accuracy")],
            [(c.kl, "KL")],
            [(c.win_rate, "win-rate"), (interval[0], "95% low"), (interval[1], "95% high")],
            [(c.human_minutes, "minutes")],
        ]
        for panel, pairs in zip(points, values, strict=True):
            panel += [(x, float(v), series) for v, series in pairs if v is not None]
    return [
        pd.DataFrame(p, columns=PANEL_COLUMNS).astype({"round": "float64", "value": "float64"})
        for p in points
    ]


def dashboard_data(session: Session) -> tuple[Any, ...]:
    """Summary markdown, labeler rows, flagged rows, round costs, labelers by week, then one plot frame per
    ROUND_PANELS entry (store reads; the handler checks the role)."""
    counts = store_counts(session=session)
    every = load_set_rankings(session=session)  # read once: pairs and agreement, and labeler quality
    sets = [s for s in every if s.origin == "generated"]
    pairs = preference_records(session=session, sets=sets)
    agree = agreement([s.rankings for s in sets])
    alpha = (
        "n/a (needs sets ranked by 2+ labelers)"
        if agree.alpha is None
        else f"{agree.alpha:.3f} over {agree.sets} sets"
    )
    flags, reasons = flagged_completions(session=session)
    summary = (
        f"**Sets:** {counts.sets} ({counts.generated_sets} generated, {counts.imported_sets} imported) · "
        f"**Rankings:** {counts.rankings} ({counts.skipped} skipped, {counts.none_acceptable} none acceptable, "
        f"{counts.rankings_last_hour} in the last hour) · **Pairs (labeled here):** {len(pairs)}\n\n"
        f"**Krippendorff's alpha (ordinal):** {alpha} · **Flagged completions:** {counts.flagged_completions} "
        + (f"({', '.join(f'{k}: {v}' for k, v in reasons.most_common())})" if reasons else "")
    )
    labelers, to_review = [], []
    for q in labeler_quality(session=session, sets=every):
        row, tau = q.row, agree.per_labeler_tau.get(q.row.user_id)
        if row.role == "admin" and not row.rankings:  # an admin who never labeled is not a labeler
            continue
        labelers.append(
            [
                row.name,
                row.role,
                row.disabled,
                row.rankings,
                row.skipped,
                row.median_seconds,
                row.fast_share,
                row.flag_share,
                _round(tau),
                agree.per_labeler_sets.get(row.user_id, 0),
                _round(q.loo_tau),
                q.gold.sets if q.gold else 0,
                _round(q.gold.mean_tau if q.gold else None),
                _round(q.gold.flags_caught if q.gold else None),
                _round(q.reliability),
                "; ".join(q.concerns),
            ]
        )
        if q.concerns:
            to_review.append(f"{row.name} ({'; '.join(q.concerns)})")
    if to_review:
        summary += "\n\n**Labelers to review** (listed, never dropped): " + ", ".join(to_review)
    flagged = [[f.set_id, f.completion_id, f.reason, f.labeler, f.text[:600], f.comment] for f in flags]
    weeks = [
        [w.week, w.labeler, w.rankings, w.median_seconds, w.skip_share, w.flag_share, w.loo_tau, w.loo_sets]
        for w in weekly_trend(session=session, sets=every)
    ]
    costs = round_costs(session=session)
    summary += "\n\n" + win_rate_note(
        costs, bool(get_setting(session=session, key="human_eval", default=False))
    )
    return summary, labelers, flagged, rounds_table(costs), weeks, *round_panels(costs)


def win_rate_note(costs: list[RoundCost], mixing: bool) -> str:
    """Why the human win-rate column and plot are blank, and how to fill them; empty once a round has one."""
    if any(c.win_rate is not None for c in costs):
        return ""
    if mixing:
        return (
            "**Human win-rate:** mixing is on; it appears once labelers have ranked sets that mix a new "
            "version's answers with its parent's."
        )
    return (
        "**Human win-rate:** blank because human-evaluation mixing is off. Turn it on in Admin > Data "
        '("Human evaluation") and new sets mix the current and the previous version\'s answers.'
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def as_of(snap: Snapshot) -> str:
    """When the figures shown were computed, how long that took, and whether newer ones are on the way."""
    if snap.made_at is None:
        return ""
    note = (
        f"\n\n*Figures as of {snap.made_at:%H:%M:%S} UTC (computed in {snap.seconds:.1f} s, in the background): "
        f"labelers, agreement and rounds are recomputed at most once every {FIGURES_SECONDS:.0f} s, or ten times "
        "what the last computation took, for every admin (Refresh now starts one)."
    )
    return note + (
        " Recomputing now: the new figures appear on a later refresh.*" if snap.refreshing else "*"
    )


def waiting_summary(snap: Snapshot) -> str:
    """The summary while no figures exist yet: being computed, or why they could not be."""
    if snap.error:
        return f"**The store-wide figures could not be computed:** {snap.error}. The next try is within a minute."
    return (
        "**Computing the store-wide figures** (a pass over every ranking: a large store takes a while). They "
        f"appear here on their own; this page refreshes every {REFRESH_SECONDS:.0f} s."
    )


def empty_figures() -> tuple[Any, ...]:
    """`dashboard_data`'s shape with nothing in it: what the page shows while the first figures are computed."""
    return "", [], [], [], [], *round_panels([])


def build_dashboard(deps: UIDeps) -> TabLoad:
    figures = BackgroundValue(
        deps.engine, dashboard_data, ttl=FIGURES_SECONDS, clock=deps.clock, wait=FIGURES_WAIT
    )
    if deps.figures_at_start:  # the first admin after a restart finds them, not a page waiting on a pass
        figures.start()
    with gr.Tab("Dashboard"):
        refresh = gr.Button("Refresh now", elem_id="dashboard-refresh", size="sm")
        gr.Markdown(f"Refreshes on its own every {REFRESH_SECONDS:.0f} s.")
        summary = gr.Markdown(elem_id="dashboard-summary")
        background_note = gr.Markdown(elem_id="background-warning")
        background = gr.Dataframe(
            headers=BACKGROUND_COLUMNS,
            label="Background processes (CPU share and rate over the last minute)",
            interactive=False,
            elem_id="background-processes",
        )
        labelers = gr.Dataframe(headers=LABELER_COLUMNS, label="Labelers", interactive=False)
        flagged = gr.Dataframe(
            headers=FLAG_COLUMNS,
            label="Flagged completions (newest first)",
            interactive=False,
            wrap=True,
            column_widths=["6%", "8%", "10%", "10%", "46%", "20%"],
        )
        rounds = gr.Dataframe(
            headers=ROUND_COLUMNS,
            label="Rounds: what the labels cost (server-measured minutes) and bought (newest first)",
            interactive=False,
        )
        with gr.Row():
            round_plots = [
                trend_plot("round", title, y_title=y_title, elem_id=f"round-plot-{i}")
                for i, (title, y_title) in enumerate(ROUND_PANELS)
            ]
        weeks = gr.Dataframe(headers=WEEK_COLUMNS, label="Labelers by week (newest first)", interactive=False)
        judges = gr.Dataframe(
            headers=JUDGE_COLUMNS,
            label="Judges: coverage, agreement with people, human rankings saved (Admin > Judges manages them)",
            interactive=False,
            wrap=True,
            elem_id="dashboard-judges",
        )
        timer = gr.Timer(REFRESH_SECONDS, active=False)  # switched on at page load for admins only

    def on_refresh(request: gr.Request, fresh: bool = False):
        require_admin(deps.engine, request)
        snap = figures.get(fresh=fresh)  # every admin's page and refresh share one computation
        data = snap.value if snap.value is not None else empty_figures()
        frame, note = background_view(deps.monitor)
        panels = [with_caption(f, "round") for f in data[-len(ROUND_PANELS) :]]
        summary = data[0] + as_of(snap) if snap.value is not None else waiting_summary(snap)
        if snap.error and snap.value is not None:
            summary += f"\n\n**The last recomputation failed:** {snap.error}"
        return (
            summary,
            *data[1 : -len(ROUND_PANELS)],
            *panels,
            note,
            frame,
            judge_table(deps.engine),
        )  # last: the API's earlier outputs keep their places

    outputs = [summary, labelers, flagged, rounds, weeks, *round_plots, background_note, background, judges]

    def on_refresh_now(request: gr.Request):
        return on_refresh(request, fresh=True)

    refresh.click(on_refresh_now, None, outputs, api_name="admin_dashboard")
    timer.tick(on_refresh, None, outputs, show_progress="hidden", api_visibility="private")

    def on_open(request: gr.Request):
        return (*on_refresh(request), gr.Timer(active=True))

    return TabLoad(on_open, [*outputs, timer])  # filled, then kept fresh, when an admin opens the page
