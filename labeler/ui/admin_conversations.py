"""Admin "Conversations" tab: where next user messages come from (labelers, an imported list, or nowhere; per
prompt source), how deep a conversation goes and whether later turns are generated first; a conversation's tree
from any of its prompts, with each turn's sets and chosen answers; and stopping a branch
(labeler/labels/conversations.py). Every handler checks the admin role on the server."""

from __future__ import annotations

import gradio as gr
from sqlmodel import Session

from labeler.labels.conversations import (
    Turn,
    conversation_tree,
    conversations,
    set_conversations,
    stop_branch,
)
from labeler.ui.deps import TabLoad, UIDeps, require_admin
from labeler.ui.render import content_html, page

SOURCES = ["none", "labeler", "list"]


def parse_sources(text: str) -> dict[str, str]:
    """`SOURCE = labeler|list|none` lines as a dict; ValueError naming the line that is not one."""
    out = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"line {number}: write `SOURCE = labeler`, `= list` or `= none`, not {line!r}")
        out[name.strip()] = value.strip()
    return out


def path_to(turns: list[Turn], prompt_id: int) -> set[int]:
    """The prompt ids from the conversation's first turn to `prompt_id`: the chosen answers that led there."""
    parent = {t.prompt_id: t.parent_prompt_id for t in turns}
    path: set[int] = set()
    current: int | None = prompt_id
    while current is not None and current not in path:
        path.add(current)
        current = parent.get(current)
    return path


def tree_html(turns: list[Turn], path: set[int] | None = None) -> str:
    """The conversation as nested turns: each with its prompt id, the answer it continues, the user's message
    and its sets (labels in, the chosen answer), a stopped branch marked; the turns on `path` (the chosen answers
    that lead to a set) marked with ▶."""
    parts = []
    for t in turns:
        pad = 1.5 * (t.turn - 1)
        came = f"<p><em>continues from:</em> {content_html(t.continued_from)}</p>" if t.continued_from else ""
        sets = "".join(
            f"<li>set {s.set_id}: labels {s.labels}"
            + (f"; chosen: {content_html(s.chosen)}" if s.chosen else "; not decided")
            + "</li>"
            for s in t.sets
        )
        stopped = " (stopped)" if t.stopped else ""
        mark = "▶ " if path and t.prompt_id in path else ""
        parts.append(
            f'<div style="margin-left:{pad}em"><p><strong>{mark}Turn {t.turn}, prompt {t.prompt_id}{stopped}</strong></p>'
            f"{came}<p><em>user:</em> {content_html(t.said)}</p><ul>{sets}</ul></div>"
        )
    return page("<hr>".join(parts)) if parts else ""


def build_conversations_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Conversations"):
        gr.Markdown(
            "When a set is decided, its conversation can go on from the chosen answer (the labelers' consensus "
            "first) with a next user message: written by a labeler under the ranking (**labeler**), the "
            "prompt's imported follow-ups (**list**), or none (**none**: the branch ends). The generator then "
            "writes the next turn's sets from the current policy. Training reads the whole history as the prompt."
        )
        with gr.Row():
            default = gr.Radio(SOURCES, value="none", label="Next user messages come from")
            depth = gr.Number(value=3, precision=0, minimum=1, maximum=16, label="User turns at most")
            prefer = gr.Radio(["finish", "fresh"], value="finish", label="Generate first")
        by_source = gr.Textbox(
            label="Per prompt source (one `SOURCE = labeler|list|none` a line; others take the choice above)",
            lines=3,
        )
        save = gr.Button("Save conversation settings")
        with gr.Row():
            prompt_id = gr.Number(precision=0, label="A prompt id of the conversation")
            show = gr.Button("Show its tree", scale=0)
            stop = gr.Button("Stop the branch at this prompt", scale=0)
        tree = gr.HTML(elem_id="conversation-tree")
        status = gr.Markdown(elem_id="conversations-status")

    def on_load(request: gr.Request):
        require_admin(engine, request)
        with Session(engine) as session:
            c = conversations(session=session)
        lines = "\n".join(f"{k} = {v}" for k, v in c.by_source.items())
        return c.default, c.depth, c.prefer, lines

    def on_save(request: gr.Request, source: str, turns: float, first: str, lines: str) -> str:
        require_admin(engine, request)
        try:
            with Session(engine) as session:
                c = set_conversations(
                    session=session,
                    default=source,
                    by_source=parse_sources(lines),
                    depth=int(turns or 0),
                    prefer=first,
                )
        except ValueError as exc:
            raise gr.Error(f"Not saved: {exc}") from exc
        return f"Conversations: next messages from **{c.default}**, at most {c.depth} user turns, {c.prefer} first."

    def on_show(request: gr.Request, pid: float) -> str:
        require_admin(engine, request)
        try:
            with Session(engine) as session:
                return tree_html(conversation_tree(session=session, prompt_id=int(pid or 0)))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def on_stop(request: gr.Request, pid: float):
        require_admin(engine, request)
        try:
            with Session(engine) as session:
                stopped = stop_branch(session=session, prompt_id=int(pid or 0))
                shown = tree_html(conversation_tree(session=session, prompt_id=int(pid or 0)))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Stopped {stopped} prompt(s): prompt {int(pid)} and the turns after it.", shown

    save.click(on_save, [default, depth, prefer, by_source], status, api_name="admin_conversations")
    show.click(on_show, [prompt_id], tree, api_name="admin_conversation_tree")
    stop.click(on_stop, [prompt_id], [status, tree], api_name="admin_stop_branch")
    return TabLoad(on_load, [default, depth, prefer, by_source])
