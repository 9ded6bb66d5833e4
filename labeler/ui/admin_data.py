"""Admin data tabs: prompt and pair import, guidelines editor, labels per set, users, export."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import cast

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.io.export import (
    EXPORT_FORMATS,
    ExportFormat,
    LabelerWeights,
    export_preferences,
    export_raw_rankings,
)
from labeler.io.export_preview import preview_export, preview_note
from labeler.io.formats import ImportFormatError
from labeler.io.importers import import_pairs, import_prompts
from labeler.io.oasst import import_oasst
from labeler.labels.pairs import FlagMode, PairSettings
from labeler.labels.stats import account_rows
from labeler.store.db import read_session
from labeler.store.settings import (
    current_guidelines,
    get_setting,
    labels_needed,
    put_setting,
    save_guidelines,
    set_labels_needed,
)
from labeler.store.users import UserError, add_user, new_password, reset_password, set_disabled
from labeler.ui.admin_api import build_tokens_section, build_webhooks_section
from labeler.ui.deps import TabLoad, UIDeps, require_admin


def build_data_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Prompts & guidelines"):
        with gr.Row():
            upload = gr.File(
                label="Prompts or pairs file (JSONL[.gz], CSV, TXT, Parquet)", file_count="single"
            )
            with gr.Column():
                kind = gr.Radio(
                    ["prompts", "pairs", "oasst"],
                    value="prompts",
                    label="File holds (oasst: OpenAssistant-style message trees)",
                )
                eval_fraction = gr.Slider(
                    0, 0.5, value=0.1, step=0.05, label="Share of new prompts held out (eval split)"
                )
                do_import = gr.Button("Import")
        import_status = gr.Markdown()
        k = gr.Slider(1, 5, step=1, value=1, label="Labelers per set (overlap k)")
        human_eval = gr.Checkbox(
            label="Human evaluation: new sets mix completions of the current and the previous policy"
        )
        save_k = gr.Button("Save labeling settings")
        guide = gr.Textbox(label="Guidelines (Markdown); saving makes a new version", lines=12)
        save_guide = gr.Button("Save guidelines")
        data_status = gr.Markdown()

    def on_import(request: gr.Request, file: str | None, what: str, fraction: float) -> str:
        require_admin(engine, request)
        if not file:
            raise gr.Error("Choose a file first.")
        try:
            with Session(engine) as session:
                if what == "prompts":
                    done = import_prompts(session=session, path=Path(file), eval_fraction=fraction)
                    return f"Imported {done.added} new prompts ({done.already_present} already present)."
                if what == "oasst":
                    trees = import_oasst(session=session, path=Path(file))
                    return f"Imported {trees.prompts} new prompts and {trees.pairs.added} pairs ({trees.pairs.already_present} already present)."
                result = import_pairs(session=session, path=Path(file))
                return f"Imported {result.added} pairs ({result.already_present} already present)."
        except ImportFormatError as exc:
            raise gr.Error(f"Nothing imported: {exc}") from exc

    def on_load_settings(request: gr.Request):
        require_admin(engine, request)
        with Session(engine) as session:
            mixing = bool(get_setting(session=session, key="human_eval", default=False))
            return labels_needed(session=session), mixing, current_guidelines(session=session).text

    def on_save_k(request: gr.Request, value: float, mixing: bool) -> str:
        require_admin(engine, request)
        with Session(engine) as session:
            updated = set_labels_needed(session=session, k=int(value))
            put_setting(session=session, key="human_eval", value=bool(mixing))
        state = "on" if mixing else "off"
        return f"Labels per set is now {int(value)} (applied to {updated} unlabeled sets too); human evaluation mixing {state}."

    def on_save_guide(request: gr.Request, text: str) -> str:
        admin = require_admin(engine, request)
        with Session(engine) as session:
            try:
                row = save_guidelines(session=session, text=text, author=admin.name)
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
        return f"Guidelines saved as version {row.version}."

    do_import.click(on_import, [upload, kind, eval_fraction], import_status, api_name="admin_import")
    save_k.click(on_save_k, [k, human_eval], data_status, api_name="admin_labels_needed")
    save_guide.click(on_save_guide, [guide], data_status, api_name="admin_save_guidelines")
    return TabLoad(on_load_settings, [k, human_eval, guide])


def users_frame(engine) -> pd.DataFrame:
    """Every account with its rankings (skips left out), by name."""
    with read_session(engine) as session:
        rows = account_rows(session=session)
    return pd.DataFrame(
        [[r.name, r.role, r.disabled, r.rankings] for r in rows],
        columns=["name", "role", "disabled", "rankings"],
    )


def build_users_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Users"):
        table = gr.Dataframe(label="Users", interactive=False)
        with gr.Row():
            name = gr.Textbox(label="User name")
            role = gr.Radio(["labeler", "admin"], value="labeler", label="Role")
        with gr.Row():
            add = gr.Button("Add user")
            disable = gr.Button("Disable")
            enable = gr.Button("Enable")
            reset = gr.Button("Reset password")
        result = gr.Markdown()
        tokens = build_tokens_section(deps)
        hooks = build_webhooks_section(deps)

    def act(action: str):
        def handler(request: gr.Request, user_name: str, user_role: str):
            require_admin(engine, request)
            try:
                with Session(engine) as session:
                    if action == "add":
                        password = new_password()
                        add_user(session=session, name=user_name, password=password, role=user_role)
                        message = (
                            f"Added {user_role} **{user_name}** with password `{password}` (shown once)."
                        )
                    elif action == "reset":
                        message = f"New password for **{user_name}**: `{reset_password(session=session, name=user_name)}` (shown once)."
                    else:
                        set_disabled(session=session, name=user_name, disabled=action == "disable")
                        message = f"{action.capitalize()}d **{user_name}**."
            except UserError as exc:
                raise gr.Error(str(exc)) from exc
            return message, users_frame(engine)

        return handler

    for button, action in ((add, "add"), (disable, "disable"), (enable, "enable"), (reset, "reset")):
        button.click(act(action), [name, role], [result, table], api_name=f"admin_user_{action}")

    def on_list(request: gr.Request):
        require_admin(engine, request)
        return users_frame(engine), tokens.load(request), *hooks.load(request)

    return TabLoad(on_list, [table, *tokens.outputs, *hooks.outputs])


EXPORT_ORIGINS = ("all", "generated", "imported")
PREVIEW_COLUMNS = ["prompt", "chosen", "rejected", "agreement", "labelers", "split"]


def build_export_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Export"):
        fmt = gr.Radio(list(EXPORT_FORMATS), value="parquet", label="Format")
        origin = gr.Radio(list(EXPORT_ORIGINS), value="all", label="Which labels")
        with gr.Row():
            keep_ties = gr.Checkbox(label="Keep ties (margin 0)")
            flagged = gr.Radio(["drop", "reject"], value="drop", label="Flagged completions")
            min_agreement = gr.Slider(0, 1, value=0, step=0.05, label="Minimum agreement")
            raw = gr.Checkbox(label="Also raw rankings (JSONL)", value=True)
            weights = gr.Radio(
                ["equal", "reliability"],
                value="equal",
                label="Consensus: every vote counts once, or votes weighted by each labeler's estimated accuracy",
            )
        with gr.Row():
            go = gr.Button("Export", variant="primary")
            look = gr.Button("Preview at these settings")
        summary = gr.Markdown(elem_id="export-summary")
        preview = gr.Dataframe(
            headers=PREVIEW_COLUMNS,
            label="The first rows",
            interactive=False,
            wrap=True,
            elem_id="export-preview",
        )

    def on_preview(request: gr.Request, which: str, ties: bool, flags: str, agree: float, by: str):
        require_admin(engine, request)
        settings = _export_settings(which, flags, by, ties, agree)
        with read_session(engine) as session:
            found = preview_export(
                session=session, settings=settings, origins=None if which == "all" else [which], weights=by
            )
        return preview_note(found), pd.DataFrame(found.rows, columns=PREVIEW_COLUMNS)

    def on_export(
        request: gr.Request,
        f: str,
        which: str,
        ties: bool,
        flags: str,
        agree: float,
        with_raw: bool,
        by: str,
        progress=gr.Progress(),
    ):
        require_admin(engine, request)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = deps.home / "exports" / stamp
        progress(0.1, desc="reading rankings")
        if f not in EXPORT_FORMATS:
            raise gr.Error(f"Unknown export format {f!r}.")
        settings = _export_settings(which, flags, by, ties, agree)
        with read_session(engine) as session:  # reads only: no write lock while files are written
            result = export_preferences(
                session=session,
                out=out,
                fmt=cast(ExportFormat, f),
                settings=settings,
                origins=None if which == "all" else [which],
                weights=cast(LabelerWeights, by),
            )
            if with_raw:
                export_raw_rankings(session=session, out=out)
        progress(0.8, desc="packing")
        archive = Path(shutil.make_archive(str(out), "zip", root_dir=out))
        # served to admins only, at /exports/NAME.zip (labeler/ui/guard.py), never through Gradio's file cache
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.by_agreement.items())) or "none"
        return (
            f"Exported **{result.pairs}** pairs from {result.sets} sets (pairs by agreement: {counts}); the first "
            f"rows as written are below. [Download {archive.name}](exports/{archive.name})",
            pd.DataFrame(result.preview, columns=PREVIEW_COLUMNS),
        )

    go.click(
        on_export,
        [fmt, origin, keep_ties, flagged, min_agreement, raw, weights],
        [summary, preview],
        api_name="admin_export",
    )
    choices = [origin, keep_ties, flagged, min_agreement, weights]
    look.click(on_preview, choices, [summary, preview], api_name="admin_export_preview")

    def on_open(request: gr.Request):
        return on_preview(request, "all", False, "drop", 0.0, "equal")  # the form's defaults

    return TabLoad(on_open, [summary, preview])


def _export_settings(which: str, flags: str, by: str, ties: bool, agree: float) -> PairSettings:
    """The form's pair settings, each choice checked on the server."""
    if which not in EXPORT_ORIGINS or flags not in ("drop", "reject") or by not in ("equal", "reliability"):
        raise gr.Error(
            f"Unknown export choice: labels {which!r}, flagged answers {flags!r}, consensus {by!r}."
        )
    return PairSettings(keep_ties=ties, flagged=cast(FlagMode, flags), min_agreement=agree)
