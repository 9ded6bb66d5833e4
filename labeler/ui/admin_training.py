"""Admin training tab: the jobs table (status, progress, error) and cancel."""

from __future__ import annotations

import gradio as gr
import pandas as pd
from sqlmodel import Session, col, select

from labeler.tables import Job
from labeler.ui.deps import UIDeps, require_admin


def jobs_frame(session: Session) -> pd.DataFrame:
    jobs = session.exec(select(Job).order_by(col(Job.id).desc()).limit(50)).all()
    rows = [
        [
            j.id,
            j.kind,
            j.status,
            f"{j.progress:.0%}",
            j.created_at.strftime("%m-%d %H:%M"),
            (j.error or "")[:200],
        ]
        for j in jobs
    ]
    return pd.DataFrame(rows, columns=["job", "kind", "status", "progress", "created", "error"])


def build_training_tab(deps: UIDeps) -> tuple:
    engine = deps.engine
    with gr.Tab("Training"):
        refresh = gr.Button("Refresh jobs")
        table = gr.Dataframe(label="Jobs", interactive=False)

    def on_list(request: gr.Request):
        require_admin(engine, request)
        with Session(engine) as session:
            return jobs_frame(session)

    refresh.click(on_list, None, table, api_name="admin_jobs")
    return on_list, [table]
