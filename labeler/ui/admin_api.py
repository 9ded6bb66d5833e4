"""Admin: personal API tokens and webhooks (two accordions in Admin > Users), for programs that use the REST API
(labeler/api/, docs/api.md). A token and a hook's signing secret are shown once, when made.

    tokens = build_tokens_section(deps)      # inside the Users tab
    hooks = build_webhooks_section(deps)
"""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.records.webhooks import (
    EVENTS,
    WebhookError,
    add_webhook,
    recent_deliveries,
    set_webhook_active,
    webhooks,
)
from labeler.store.api_tokens import create_token, list_tokens, revoke_token
from labeler.store.db import read_session
from labeler.store.users import UserError
from labeler.ui.deps import TabLoad, UIDeps, require_admin

TOKEN_COLUMNS = [
    "id",
    "user",
    "role",
    "name",
    "starts with",
    "made by",
    "made",
    "state",
    "calls",
    "last used",
]
HOOK_COLUMNS = ["id", "url", "events", "every", "state", "made by"]
DELIVERY_COLUMNS = ["id", "hook", "event", "status", "tries", "answer", "made", "delivered"]


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else "-"


def tokens_frame(engine) -> pd.DataFrame:
    with read_session(engine) as session:
        rows = list_tokens(session=session)
    return pd.DataFrame(
        [
            [
                t.id,
                t.user,
                t.role,
                t.name,
                t.prefix + "…",
                t.created_by,
                _when(t.created_at),
                f"revoked {_when(t.revoked_at)}" if t.revoked_at else "active",
                t.uses,
                _when(t.last_used_at),
            ]
            for t in rows
        ],
        columns=TOKEN_COLUMNS,
    )


def hooks_frames(engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    with read_session(engine) as session:
        hooks = webhooks(session=session)
        deliveries = recent_deliveries(session=session, limit=50)
        hook_rows = [
            [h.id, h.url, ", ".join(h.events), h.every, "active" if h.active else "disabled", h.created_by]
            for h in hooks
        ]
        delivery_rows = [
            [d.id, d.hook_id, d.event, d.status, d.attempts, d.response_code or (d.error or "")[:80],
             _when(d.created_at), _when(d.delivered_at)]
            for d in deliveries
        ]  # fmt: skip
    return pd.DataFrame(hook_rows, columns=HOOK_COLUMNS), pd.DataFrame(
        delivery_rows, columns=DELIVERY_COLUMNS
    )


def build_tokens_section(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Accordion("API tokens (the REST API: docs/api.md)", open=False):
        with gr.Row():
            owner = gr.Textbox(label="For user")
            purpose = gr.Textbox(label="What it is for (optional)")
        with gr.Row():
            make = gr.Button("Create token")
            token_id = gr.Number(label="Token id", precision=0)
            revoke = gr.Button("Revoke token")
        said = gr.Markdown()
        table = gr.Dataframe(
            headers=TOKEN_COLUMNS, label="Tokens (calls: every use is logged)", interactive=False
        )

    def on_make(request: gr.Request, user: str, name: str):
        admin = require_admin(engine, request)
        try:
            with Session(engine) as session:
                made = create_token(session=session, user=user.strip(), name=name, by=admin.name)
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        message = (
            f"Token {made.token_id} for **{html.escape(user)}**, shown once: copy it now.\n\n`{made.secret}`"
        )
        return message, tokens_frame(engine)

    def on_revoke(request: gr.Request, chosen: float | None):
        require_admin(engine, request)
        if not chosen:
            raise gr.Error("Enter the id of the token to revoke.")
        try:
            with Session(engine) as session:
                revoke_token(session=session, token_id=int(chosen))
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Revoked token {int(chosen)}: its next call is refused.", tokens_frame(engine)

    make.click(on_make, [owner, purpose], [said, table], api_name="admin_token_add")
    revoke.click(on_revoke, [token_id], [said, table], api_name="admin_token_revoke")

    def on_list(request: gr.Request):
        require_admin(engine, request)
        return tokens_frame(engine)

    return TabLoad(on_list, [table])


def build_webhooks_section(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Accordion("Webhooks (signed event deliveries: docs/api.md)", open=False):
        gr.Markdown(
            "Programs told when something happens: each delivery is a signed JSON POST, retried with a doubling "
            "wait (docs/api.md shows how to check the signature)."
        )
        with gr.Row():
            url = gr.Textbox(label="URL (http:// or https://)", scale=3)
            every = gr.Number(label="rankings.new: every N new rankings", value=100, precision=0)
        events = gr.CheckboxGroup(
            list(EVENTS), label="Events", value=["job.succeeded", "job.failed", "version.refused"]
        )
        with gr.Row():
            register = gr.Button("Register webhook")
            hook_id = gr.Number(label="Webhook id", precision=0)
            disable = gr.Button("Disable")
            enable = gr.Button("Enable")
        said = gr.Markdown()
        hooks = gr.Dataframe(headers=HOOK_COLUMNS, label="Webhooks", interactive=False)
        deliveries = gr.Dataframe(headers=DELIVERY_COLUMNS, label="Latest deliveries", interactive=False)

    def on_register(request: gr.Request, target: str, chosen: list[str], n: float | None):
        admin = require_admin(engine, request)
        try:
            with Session(engine) as session:
                hook, secret = add_webhook(
                    session=session, url=target, events=chosen or [], by=admin.name, every=int(n or 100)
                )
                number = hook.id
        except WebhookError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Webhook {number} registered. Its signing secret, shown once: `{secret}`", *hooks_frames(
            engine
        )

    def turner(active: bool):
        def on_turn(request: gr.Request, chosen: float | None):
            require_admin(engine, request)
            if not chosen:
                raise gr.Error("Enter the webhook's id.")
            try:
                with Session(engine) as session:
                    set_webhook_active(session=session, hook_id=int(chosen), active=active)
            except WebhookError as exc:
                raise gr.Error(str(exc)) from exc
            return f"Webhook {int(chosen)} {'enabled' if active else 'disabled'}.", *hooks_frames(engine)

        return on_turn

    outputs = [said, hooks, deliveries]
    register.click(on_register, [url, events, every], outputs, api_name="admin_webhook_add")
    disable.click(turner(False), [hook_id], outputs, api_name="admin_webhook_disable")
    enable.click(turner(True), [hook_id], outputs, api_name="admin_webhook_enable")

    def on_list(request: gr.Request):
        require_admin(engine, request)
        return hooks_frames(engine)

    return TabLoad(on_list, [hooks, deliveries])
