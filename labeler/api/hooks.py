"""Webhooks through the API (admins): register a URL for events (its signing secret is shown once), list them with
their latest deliveries, turn one off or on. Deliveries: rlhf/serve/webhooks.py; verifying one:
docs/examples/webhook_receiver.py.

    POST /api/v1/webhooks {"url": "https://ci.example/hook", "events": ["job.succeeded", "job.failed"]}
    GET  /api/v1/webhooks
    POST /api/v1/webhooks/3/disable
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from labeler.api.auth import Caller, admin, engine_of
from labeler.records.webhooks import (
    EVENTS,
    WebhookError,
    add_webhook,
    recent_deliveries,
    set_webhook_active,
    webhooks,
)
from labeler.store.db import read_session
from labeler.store.tables import Webhook, WebhookDelivery

router = APIRouter(tags=["webhooks"])


class NewHook(BaseModel):
    url: str = Field(max_length=2048)
    events: list[str] = Field(description=f"any of {', '.join(EVENTS)}")
    every: int = Field(100, description="rankings.new: every this many new rankings by people")


class HookView(BaseModel):
    id: int
    url: str
    events: list[str]
    every: int
    active: bool
    created_by: str
    deliveries: list[dict[str, Any]] = Field(description="the latest deliveries, newest first")
    secret: str | None = Field(default=None, description="only in the answer that registers the hook")


def delivery_view(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event": d.event,
        "status": d.status,
        "attempts": d.attempts,
        "response_code": d.response_code,
        "error": d.error,
        "created_at": d.created_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
    }


def hook_view(session: Session, hook: Webhook, secret: str | None = None) -> HookView:
    latest = recent_deliveries(session=session, hook_id=hook.id, limit=10)
    return HookView(
        id=hook.id or 0,
        url=hook.url,
        events=hook.events,
        every=hook.every,
        active=hook.active,
        created_by=hook.created_by,
        deliveries=[delivery_view(d) for d in latest],
        secret=secret,
    )


@router.post("/webhooks", response_model=HookView, status_code=201, summary="Register a webhook")
def register(body: NewHook, request: Request, who: Caller = Depends(admin)) -> HookView:
    try:
        with Session(engine_of(request)) as session:
            hook, secret = add_webhook(
                session=session, url=body.url, events=body.events, by=who.name, every=body.every
            )
            return hook_view(session, hook, secret)
    except WebhookError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.get("/webhooks", response_model=list[HookView], summary="Webhooks and their latest deliveries")
def list_hooks(request: Request, who: Caller = Depends(admin)) -> list[HookView]:
    with read_session(engine_of(request)) as session:
        return [hook_view(session, hook) for hook in webhooks(session=session)]


@router.post("/webhooks/{hook_id}/{state}", response_model=HookView, summary="Turn a webhook off or on")
def turn(hook_id: int, state: str, request: Request, who: Caller = Depends(admin)) -> HookView:
    if state not in ("enable", "disable"):
        raise HTTPException(status_code=404, detail="use /enable or /disable")
    try:
        with Session(engine_of(request)) as session:
            hook = set_webhook_active(session=session, hook_id=hook_id, active=state == "enable")
            return hook_view(session, hook)
    except WebhookError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
