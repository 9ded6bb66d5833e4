"""Admin "Browse" tab: search prompts (text, split), list ranked sets (labeler, policy version, flagged,
disagreement), and open one set with its whole conversation, every label, the consensus and its pairs
(labeler/labels/browse.py). Every handler checks the admin role on the server."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from labeler.labels.browse import (
    SPLITS,
    EditDetail,
    RevisionDetail,
    SetDetail,
    find_prompts,
    find_ranked_sets,
    set_detail,
)
from labeler.labels.conversations import Turn, conversation_tree
from labeler.store.db import read_session
from labeler.ui.admin_conversations import path_to, tree_html
from labeler.ui.deps import TabLoad, UIDeps, require_admin
from labeler.ui.render import conversation_html, page, text_html

PROMPT_COLUMNS = ["prompt", "split", "source", "turns", "last user turn", "sets"]
SET_COLUMNS = ["set", "prompt", "version", "origin", "labels", "labelers", "agreement", "flags", "none acceptable", "skipped"]  # fmt: skip
LABEL_COLUMNS = ["labeler", "order", "flags", "none acceptable", "skipped", "comment", "seconds", "at"]
PAIR_COLUMNS = ["chosen", "rejected", "votes for", "votes against", "ties", "agreement"]


def detail_html(d: SetDetail, tree: list[Turn] | None = None) -> str:
    """The set as the admin reads it: where it came from, the conversation, the answers (as written: the raw
    text, wrapped) and the consensus; for a set in a conversation of several turns, the conversation's tree with
    the path to this set marked."""
    head = f"Set {d.set_id} · {d.origin} · policy v{d.version} · {d.split} prompt"
    if d.selection:
        head += f" · chosen by {d.selection.get('by', '?')}"
    answers = "".join(
        f"<p><strong>Answer {n}</strong>{' (cut off at the length limit)' if reason == 'length' else ''}</p>"
        f'<pre style="white-space:pre-wrap;overflow-wrap:anywhere">{html.escape(text)}</pre>'
        for n, text, reason in d.answers
    )
    consensus = text_html(d.consensus) if d.consensus else "no votes yet"
    return page(
        f"<h3>{text_html(head)}</h3>",
        conversation_html(d.messages),
        f"<hr>{answers}{edits_html(d.edits)}{revisions_html(d.revisions)}"
        f"<p><strong>Consensus order:</strong> {consensus}</p>",
        conversation_section(d, tree),
    )


def conversation_section(d: SetDetail, tree: list[Turn] | None) -> str:
    if not tree or len(tree) < 2 or d.prompt_id is None:
        return ""
    return (
        "<hr><h4>Conversation (▶: the chosen answers that lead to this set; Admin > Conversations stops a branch)"
        f"</h4>{tree_html(tree, path_to(tree, d.prompt_id))}"
    )


def revisions_html(revisions: list[RevisionDetail]) -> str:
    """Each revision the model wrote by the constitution: the answer it rewrote, the principle and the critique."""
    blocks = [
        f"<p><strong>Answer {r.number}</strong>: the model's revision of answer {r.source} "
        f"(constitution v{r.constitution}), shown to labelers like any answer</p>"
        f"<p><em>Principle:</em> {html.escape(r.principle)}<br><em>Critique:</em> {html.escape(r.critique)}</p>"
        for r in revisions
    ]
    return f"<h4>Revisions by the constitution</h4>{''.join(blocks)}" if blocks else ""


DIFF_TAGS = {"same": "span", "removed": "del", "added": "ins"}


def edits_html(edits: list[EditDetail]) -> str:
    """Each labeler's edit as a word diff against the answer it rewrote (escaped text in del/ins marks)."""
    blocks = []
    for e in edits:
        what = f"edit of answer {e.source}" if e.source is not None else "written from scratch"
        took = f", {e.seconds:.0f} s" if e.seconds is not None else ""
        diff = "".join(f"<{DIFF_TAGS[op]}>{html.escape(text)}</{DIFF_TAGS[op]}>" for op, text in e.diff)
        blocks.append(
            f"<p><strong>Answer {e.number}</strong>: {what} by {html.escape(e.author)}{took}</p>"
            f'<pre style="white-space: pre-wrap">{diff}</pre>'
        )
    return f"<h4>Labelers' edits</h4>{''.join(blocks)}" if blocks else ""


def build_browse_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Browse"):
        gr.Markdown("#### Prompts")
        with gr.Row():
            query = gr.Textbox(label="Search prompt text", scale=3)
            split = gr.Dropdown(list(SPLITS), value="all", label="Split", scale=1)
            find = gr.Button("Search", scale=1)
        prompts = gr.Dataframe(headers=PROMPT_COLUMNS, interactive=False, wrap=True, max_height=320)
        gr.Markdown("#### Ranked sets")
        with gr.Row():
            labeler = gr.Textbox(label="Labeler name (empty: all)")
            version = gr.Number(label="Policy version (empty: all)", precision=0)
            flagged = gr.Checkbox(label="Flagged only")
            disputed = gr.Checkbox(label="Disagreement only")
            list_sets = gr.Button("List")
        sets = gr.Dataframe(headers=SET_COLUMNS, interactive=False, wrap=True, max_height=320)
        gr.Markdown("#### One set")
        with gr.Row():
            set_id = gr.Number(label="Set number (or click a row above)", precision=0)
            show = gr.Button("Open set")
        detail = gr.HTML(elem_id="set-detail")
        labels = gr.Dataframe(headers=LABEL_COLUMNS, label="Labels", interactive=False, wrap=True)
        pairs = gr.Dataframe(
            headers=PAIR_COLUMNS, label="Pairs its votes make (answer numbers)", interactive=False
        )

    def on_prompts(request: gr.Request, text: str, which: str) -> pd.DataFrame:
        require_admin(engine, request)
        try:
            with read_session(engine) as session:
                rows = find_prompts(session=session, query=text or "", split=which)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return pd.DataFrame([[r.prompt_id, r.split, r.source, r.turns, r.text[:300], r.sets] for r in rows], columns=PROMPT_COLUMNS)  # fmt: skip

    def on_sets(request: gr.Request, name: str, v: float | None, only_flagged: bool, only_disputed: bool) -> pd.DataFrame:  # fmt: skip
        require_admin(engine, request)
        try:
            with read_session(engine) as session:
                rows = find_ranked_sets(
                    session=session,
                    labeler=name or "",
                    version=None if v is None else int(v),
                    flagged_only=bool(only_flagged),
                    disagreement_only=bool(only_disputed),
                )
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return pd.DataFrame(
            [
                [
                    r.set_id,
                    r.prompt[:200],
                    r.version,
                    r.origin,
                    r.labels,
                    r.labelers,
                    r.agreement,
                    r.flags,
                    r.none_acceptable,
                    r.skipped,
                ]
                for r in rows
            ],
            columns=SET_COLUMNS,
        )

    def on_detail(request: gr.Request, number: float | None):
        require_admin(engine, request)
        if number is None:
            raise gr.Error("Enter a set number.")
        try:
            with read_session(engine) as session:
                d = set_detail(session=session, set_id=int(number))
                tree = conversation_tree(session=session, prompt_id=d.prompt_id) if d.prompt_id else None
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        label_rows = [[x.labeler, x.order, x.flags, x.none_acceptable, x.skipped, x.comment, x.seconds, x.at.strftime("%Y-%m-%d %H:%M")] for x in d.labels]  # fmt: skip
        return detail_html(d, tree), pd.DataFrame(label_rows, columns=LABEL_COLUMNS), pd.DataFrame(d.pairs, columns=PAIR_COLUMNS)  # fmt: skip

    def on_pick(request: gr.Request, evt: gr.SelectData):
        row = evt.row_value if evt is not None else None
        number = row[0] if row else None
        return (number, *on_detail(request, number))

    find.click(on_prompts, [query, split], prompts, api_name="admin_browse_prompts")
    query.submit(on_prompts, [query, split], prompts, api_visibility="private")
    list_sets.click(on_sets, [labeler, version, flagged, disputed], sets, api_name="admin_browse_sets")
    show.click(on_detail, [set_id], [detail, labels, pairs], api_name="admin_browse_set")
    sets.select(on_pick, None, [set_id, detail, labels, pairs], api_visibility="private")

    def on_open(request: gr.Request):
        return on_prompts(request, "", "all"), on_sets(request, "", None, False, False)

    return TabLoad(on_open, [prompts, sets])
