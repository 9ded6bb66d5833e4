"""Webhooks: URLs an admin registers for events, and the outbox of their deliveries. An event is queued in the
transaction that makes it (a job's ending, a version switched or refused by the gate), so a rolled-back change
sends nothing; the server's dispatcher (rlhf/serve/webhooks.py) sends the deliveries outside any transaction,
signed with the hook's secret, and records each attempt here, retrying with backoff.

    with Session(engine) as session:
        hook, secret = add_webhook(session=session, url="https://ci.example/hook", events=["job.failed"], by="ana")
        queue_event(session=session, event="job.failed", payload={"job_id": 7})   # with the caller's change
        session.commit()
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from labeler.store.tables import ROLES, Ranking, User, Webhook, WebhookDelivery, id_of, table_of, utcnow

EVENTS: dict[str, str] = {
    "job.succeeded": "a training job finished",
    "job.failed": "a training job failed (its error in the payload)",
    "job.cancelled": "an admin cancelled a training job",
    "version.switched": "a policy version became current (by the gate, a stage or a person)",
    "version.refused": "the gate refused a round's version: it stays a candidate",
    "rankings.new": "every `every` new rankings by people",
    "labeler.below_floor": "a labeler fell under the reliability or gold floor (labeler/labels/quality.py)",
}
MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 10.0  # then doubling: 10 s, 20 s, 40 s ... about 21 min over the eight tries


class WebhookError(ValueError):
    """A hook an admin asked for that cannot be registered, with the reason."""


@dataclass(frozen=True)
class Due:
    """A delivery to send now, with what signing it needs (read in one short transaction)."""

    id: int
    hook_id: int
    url: str
    secret: str
    event: str
    payload: dict
    attempts: int
    next_at: datetime


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WebhookError(f"a webhook URL starts with http:// or https:// and names a host; got {url!r}")
    if len(url) > 2048:
        raise WebhookError("a webhook URL has at most 2048 characters")
    return url.strip()


def check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise WebhookError(f"unknown or no events {unknown}; choose from {', '.join(EVENTS)}")
    return sorted(set(events))


def add_webhook(
    *, session: Session, url: str, events: list[str], by: str, every: int = 100
) -> tuple[Webhook, str]:
    """Register a hook; returns it and its signing secret (shown once to the admin). Committed."""
    if not 1 <= every <= 1_000_000:
        raise WebhookError(f"`every` counts new rankings from 1 to 1,000,000; got {every}")
    secret = "whsec_" + secrets.token_urlsafe(32)
    hook = Webhook(url=check_url(url), events=check_events(events), secret=secret, every=every, created_by=by)
    session.add(hook)
    session.commit()
    session.refresh(hook)
    return hook, secret


def set_webhook_active(*, session: Session, hook_id: int, active: bool) -> Webhook:
    """Turn a hook off (its pending deliveries are not sent) or back on. Committed."""
    hook = session.get(Webhook, hook_id)
    if hook is None:
        raise WebhookError(f"no webhook {hook_id}")
    hook.active = active
    session.add(hook)
    session.commit()
    session.refresh(hook)
    return hook


def webhooks(*, session: Session) -> list[Webhook]:
    return list(session.exec(select(Webhook).order_by(col(Webhook.id))).all())


def queue_event(*, session: Session, event: str, payload: dict[str, Any]) -> int:
    """One delivery per active hook that asked for `event`, in the caller's transaction (not committed); returns
    how many were queued."""
    assert event in EVENTS, event
    hooks = [
        h for h in session.exec(select(Webhook).where(col(Webhook.active).is_(True))) if event in h.events
    ]
    for hook in hooks:
        session.add(WebhookDelivery(hook_id=id_of(hook), event=event, payload=payload))
    return len(hooks)


def queue_for_hook(*, session: Session, hook_id: int, event: str, payload: dict[str, Any]) -> None:
    """One delivery for one hook (a periodic event that hook's own state decided; not committed)."""
    assert event in EVENTS, event
    session.add(WebhookDelivery(hook_id=hook_id, event=event, payload=payload))


def people_rankings(*, session: Session) -> int:
    """Rankings by people (not judges, not imported), skips left out: what `rankings.new` counts."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Ranking)
            .join(User, col(User.id) == col(Ranking.user_id))
            .where(col(User.role).in_(ROLES), col(Ranking.skipped).is_(False))
        ).one()
    )


def due_deliveries(*, session: Session, now: datetime | None = None, limit: int = 20) -> list[Due]:
    """Pending deliveries whose time has come, of active hooks, oldest first."""
    rows = session.exec(
        select(WebhookDelivery, Webhook)
        .join(Webhook, col(Webhook.id) == col(WebhookDelivery.hook_id))
        .where(
            col(WebhookDelivery.status) == "pending",
            col(WebhookDelivery.next_at) <= (now or utcnow()),
            col(Webhook.active).is_(True),
        )
        .order_by(col(WebhookDelivery.id))
        .limit(limit)
    ).all()
    return [
        Due(id_of(d), id_of(h), h.url, h.secret, d.event, dict(d.payload), d.attempts, d.next_at)
        for d, h in rows
    ]


CLAIM_SECONDS = 60.0  # how long a claimed delivery waits before another replica may try it


def claim(*, session: Session, due: Due, now: datetime | None = None) -> bool:
    """Take a due delivery for this process (another replica that read it too gets False): its time moves on by
    CLAIM_SECONDS, so a replica that dies while sending leaves it to be tried again. Committed."""
    table = table_of(WebhookDelivery)
    taken = session.execute(
        update(table)
        .where(table.c.id == due.id, table.c.status == "pending", table.c.next_at == due.next_at)
        .values(next_at=(now or utcnow()) + timedelta(seconds=CLAIM_SECONDS))
    )
    session.commit()
    return bool(getattr(taken, "rowcount", 0))


def record_attempt(
    *, session: Session, delivery_id: int, code: int | None, error: str | None, now: datetime | None = None
) -> WebhookDelivery:
    """What one attempt got: delivered on a 2xx; else tried again after a doubling wait, failed after
    MAX_ATTEMPTS. Committed."""
    now = now or utcnow()
    row = session.get(WebhookDelivery, delivery_id)
    assert row is not None, delivery_id
    row.attempts += 1
    row.response_code, row.error = code, (error or None) and error[:500]
    if code is not None and 200 <= code < 300:
        row.status, row.delivered_at = "delivered", now
    elif row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
    else:
        row.next_at = now + timedelta(seconds=FIRST_RETRY_SECONDS * 2 ** (row.attempts - 1))
    session.add(row)
    session.commit()
    return row


def recent_deliveries(
    *, session: Session, hook_id: int | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(col(WebhookDelivery.id).desc()).limit(limit)
    if hook_id is not None:
        query = query.where(col(WebhookDelivery.hook_id) == hook_id)
    return list(session.exec(query).all())


def save_state(*, session: Session, hook_id: int, state: dict) -> None:
    """What a hook's periodic events last saw (not committed)."""
    hook = session.get(Webhook, hook_id)
    if hook is not None:
        hook.state = state
        session.add(hook)
