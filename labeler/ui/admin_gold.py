"""Admin gold tab: the gold rate, marking a set as gold (ranks by answer position, or its consensus), the gold
sets, and each labeler's gold score (labeler/labels/gold.py). Every handler checks the admin role on the server."""

from __future__ import annotations

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.labels.gold import gold_sets, mark_gold, named_scores, parse_ranks
from labeler.store.db import read_session
from labeler.store.settings import MAX_GOLD_RATE, gold_rate, set_gold_rate
from labeler.ui.deps import TabLoad, UIDeps, require_admin

GOLD_COLUMNS = ["gold set", "known ranks (answer id: rank)", "known flagged"]
SCORE_COLUMNS = ["labeler", "gold sets", "mean tau", "flags caught"]


def gold_frames(session: Session) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    answers = gold_sets(session=session)
    sets = [[i, str(a.ranks), sorted(a.flagged)] for i, a in sorted(answers.items())]
    scores = [[name, s.sets, s.mean_tau, s.flags_caught] for name, s in named_scores(session=session)]
    return (
        gold_rate(session=session),
        pd.DataFrame(sets, columns=GOLD_COLUMNS),
        pd.DataFrame(scores, columns=SCORE_COLUMNS),
    )


def build_gold_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Gold sets"):
        gr.Markdown(
            "Gold sets have a known answer. They are mixed into labelers' queues at the gold rate, shown like any "
            "other set, and score each labeler (Kendall tau with the known ranking; flags caught)."
        )
        rate = gr.Slider(
            0, MAX_GOLD_RATE, step=0.01, label="Gold rate (share of leases that give a gold set)"
        )
        save_rate = gr.Button("Save gold rate")
        with gr.Row():
            set_id = gr.Number(label="Set to copy as gold", precision=0)
            ranks = gr.Textbox(label="Known rank of each answer by position, e.g. 2,1,3,- ('-': flagged)")
            from_consensus = gr.Checkbox(label="Use the set's consensus instead")
        mark = gr.Button("Mark as gold")
        status = gr.Markdown()
        sets = gr.Dataframe(headers=GOLD_COLUMNS, label="Gold sets", interactive=False)
        scores = gr.Dataframe(headers=SCORE_COLUMNS, label="Gold scores per labeler", interactive=False)

    def on_load(request: gr.Request):
        require_admin(engine, request)
        with read_session(engine) as session:
            return gold_frames(session)

    def on_rate(request: gr.Request, value: float) -> str:
        require_admin(engine, request)
        with Session(engine) as session:
            try:
                set_gold_rate(session=session, rate=float(value))
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
        return f"Gold rate is now {float(value):.2f}."

    def on_mark(request: gr.Request, source: float | None, text: str, consensus: bool):
        require_admin(engine, request)
        if source is None:
            raise gr.Error("Give the id of the set to copy as gold.")
        try:
            known = None if consensus or not text.strip() else parse_ranks(text)
            with Session(engine) as session:
                gold = mark_gold(
                    session=session,
                    set_id=int(source),
                    ranks=known,
                    from_consensus=consensus,
                )
                message = f"Gold set {gold.id} made from set {int(source)}."
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        with read_session(engine) as session:
            _, gold_table, score_table = gold_frames(session)
        return message, gold_table, score_table

    save_rate.click(on_rate, [rate], status, api_name="admin_gold_rate")
    mark.click(on_mark, [set_id, ranks, from_consensus], [status, sets, scores], api_name="admin_gold_mark")
    return TabLoad(on_load, [rate, sets, scores])
