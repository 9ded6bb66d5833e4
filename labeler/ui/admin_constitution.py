"""Admin "Constitution" tab: the principles the model critiques and revises answers by, its two prompts, and the
share of new sets that get a revision (labeler/store/constitution.py; the worker: rlhf/serve/revisions.py). Every save
is a new version; every handler checks the admin role on the server."""

from __future__ import annotations

import gradio as gr
from sqlmodel import Session

from labeler.store.constitution import (
    current_constitution,
    revision_share,
    save_constitution,
    set_revision_share,
)
from labeler.ui.deps import TabLoad, UIDeps, require_admin


def build_constitution_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Constitution"):
        gr.Markdown(
            "With revisions on, the generator adds to a share of new sets one more answer: the current policy "
            "critiques one of the set's answers by a principle drawn at random, then rewrites it. Labelers see it "
            "like any other answer; Browse shows its principle and critique. Prompts take `{prompt}`, `{answer}`, "
            "`{principle}` and (the revision) `{critique}`."
        )
        share = gr.Slider(0, 1, step=0.05, value=0, label="Share of new sets that get a revision (0: off)")
        save_share = gr.Button("Save share")
        principles = gr.Textbox(label="Principles, one per line", lines=6)
        critique = gr.Textbox(label="Critique prompt", lines=6)
        revision = gr.Textbox(label="Revision prompt", lines=6)
        save = gr.Button("Save constitution (a new version)")
        status = gr.Markdown(elem_id="constitution-status")

    def on_load(request: gr.Request):
        require_admin(engine, request)
        with Session(engine) as session:
            c, s = current_constitution(session=session), revision_share(session=session)
        return s, "\n".join(c.principles), c.critique_prompt, c.revision_prompt

    def on_save(request: gr.Request, lines: str, critique_prompt: str, revision_prompt: str) -> str:
        admin = require_admin(engine, request)
        try:
            with Session(engine) as session:
                saved = save_constitution(
                    session=session,
                    principles=(lines or "").splitlines(),
                    critique_prompt=critique_prompt or "",
                    revision_prompt=revision_prompt or "",
                    author=admin.name,
                )
        except ValueError as exc:
            raise gr.Error(f"Not saved: {exc}") from exc
        return f"Constitution saved as version {saved.version} ({len(saved.principles)} principles)."

    def on_share(request: gr.Request, value: float) -> str:
        require_admin(engine, request)
        try:
            with Session(engine) as session:
                set_revision_share(session=session, share=float(value))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Revisions: {value:.0%} of new sets." if value else "Revisions are off."

    save.click(on_save, [principles, critique, revision], status, api_name="admin_save_constitution")
    save_share.click(on_share, [share], status, api_name="admin_revision_share")
    return TabLoad(on_load, [share, principles, critique, revision])
