"""Admin tab "What to label next": the selection mode (random, or by the latest reward model's uncertainty), its
random share and oversampling, the budget of sets per policy version, and how the sets of recent versions were
chosen (rlhf/select/design.py, rlhf/select/selection.py). Every handler checks the admin role on the server."""

from __future__ import annotations

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.labels.stats import chosen_sets
from labeler.records.reward_models import selection_measure
from labeler.store.db import read_session
from labeler.store.settings import MAX_OVERSAMPLE, Selection, selection, set_selection
from labeler.ui.deps import TabLoad, UIDeps, require_admin

CHOSEN_COLUMNS = ["policy version", "chosen by", "measure", "sets", "labeled", "mean score"]


def chosen_frame(session: Session) -> pd.DataFrame:
    """Per recent version, way of choosing and measure: sets written, sets with all their labels, and the mean
    stored score (in the measure's units: information and disagreement in bits, doubt 0..1)."""
    rows = [
        [f"v{c.version}", c.by, c.measure, c.sets, c.labeled, c.mean_score]
        for c in chosen_sets(session=session)
    ]
    return pd.DataFrame(rows, columns=CHOSEN_COLUMNS)


def describe(chosen: Selection, session: Session) -> str:
    budget = f"at most {chosen.budget} sets per policy version" if chosen.budget else "no budget"
    if chosen.mode == "random":
        return f"Every generated set goes to labelers; {budget}."
    return (
        f"The generator writes {chosen.oversample} candidate sets per set it keeps and keeps those the latest "
        f"reward model is least sure of, {chosen.random_share:.0%} of them at random; {budget}. "
        + selection_measure(session=session)
        + f" Generation costs {chosen.oversample} times that of random selection: if labelers wait for sets, "
        "the dashboard's background table shows the generator's sets per minute; fewer candidates cost less."
    )


def build_selection_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("What to label next"):
        gr.Markdown(
            "Labels count most where the reward model is unsure. With **uncertainty**, the generator scores "
            "candidate sets with the latest reward model and keeps those a label would teach it most: answers "
            "that differ where its score head has seen few labels, one set after another so that a batch does "
            "not ask the same question twice (a share stays random, so labels still cover every kind of "
            "prompt). Each set records how it was chosen, by which measure, and its score (the information in "
            "bits). Reward models saved without that information are read by where their score heads or "
            "ensemble members disagree (bits), or by one head's doubt (0: sure of every pair's order, 1: "
            "cannot tell any two answers apart)."
        )
        with gr.Row():
            mode = gr.Radio(["random", "uncertainty"], label="Choose sets", value="random")
            share = gr.Slider(0, 1, step=0.05, label="Share kept at random (uncertainty)")
            oversample = gr.Slider(
                1, MAX_OVERSAMPLE, step=1, label="Candidate sets per kept set (uncertainty)"
            )
            budget = gr.Number(label="Sets per policy version (0: no limit)", precision=0, minimum=0)
        save = gr.Button("Save")
        status = gr.Markdown()
        chosen = gr.Dataframe(headers=CHOSEN_COLUMNS, label="How recent sets were chosen", interactive=False)

    def on_load(request: gr.Request):
        require_admin(engine, request)
        with read_session(engine) as session:
            now = selection(session=session)
            return (
                now.mode,
                now.random_share,
                now.oversample,
                now.budget,
                describe(now, session),
                chosen_frame(session),
            )

    def on_save(request: gr.Request, how: str, random_share: float, extra: float, limit: float | None):
        require_admin(engine, request)
        with Session(engine) as session:
            try:
                now = set_selection(
                    session=session,
                    mode=how,
                    random_share=float(random_share),
                    oversample=int(extra),
                    budget=int(limit or 0),
                )
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
        with read_session(engine) as session:
            return "Saved. " + describe(now, session), chosen_frame(session)

    save.click(on_save, [mode, share, oversample, budget], [status, chosen], api_name="admin_selection")
    return TabLoad(on_load, [mode, share, oversample, budget, status, chosen])
