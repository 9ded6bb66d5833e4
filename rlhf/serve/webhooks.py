"""The webhook dispatcher: a thread of the web server that sends the outbox's deliveries (labeler/records/webhooks.py)
and raises the periodic events (`rankings.new`, `labeler.below_floor`). Each delivery is a JSON POST signed like
Stripe's: header `Rankloop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the hook's
secret>`, plus `Rankloop-Event` and `Rankloop-Delivery` (the delivery's id, the same on every retry). A receiver
checks the signature, refuses a timestamp older than five minutes, and remembers the delivery ids it has seen
(docs/examples/webhook_receiver.py). Nothing is sent inside a database transaction.

    dispatcher = Dispatcher(engine)
    dispatcher.start()        # every 2 s: periodic events, then the due deliveries
    dispatcher.run_once()     # one pass (tests)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlmodel import Session

from labeler.labels.quality import labeler_quality
from labeler.records.webhooks import (
    Due,
    claim,
    due_deliveries,
    people_rankings,
    queue_for_hook,
    record_attempt,
    save_state,
    webhooks,
)
from labeler.store.db import read_session
from labeler.store.tables import Webhook, id_of

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "Rankloop-Signature"
FLOOR_CHECK_SECONDS = (
    300.0  # labeler quality is refitted at most this often, and only when a hook asks for it
)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Dispatcher:
    def __init__(
        self,
        engine: Any,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = 2.0,
        floor_every: float = FLOOR_CHECK_SECONDS,
    ):
        self.engine, self.clock, self.interval, self.floor_every = engine, clock, interval, floor_every
        self.client = client or httpx.Client(timeout=10.0, follow_redirects=False)
        self._stop = threading.Event()
        self._floor_checked: float | None = None

    def run_once(self) -> int:
        """Raise the periodic events, then send what is due; returns the deliveries attempted."""
        with read_session(self.engine) as session:
            hooks = [h for h in webhooks(session=session) if h.active]
            for hook in hooks:
                session.expunge(hook)
        if any("rankings.new" in h.events for h in hooks):
            self._count_rankings(hooks)
        if any("labeler.below_floor" in h.events for h in hooks) and self._floor_due():
            self._check_floors(hooks)
        sent = 0
        while True:
            with read_session(self.engine) as session:
                due = due_deliveries(session=session)
            for delivery in due:
                with Session(self.engine) as session:
                    if not claim(session=session, due=delivery):
                        continue
                self._send(delivery)
                sent += 1
            if len(due) < 20 or self._stop.is_set():
                return sent

    def _send(self, due: Due) -> None:
        body = json.dumps(
            {"id": due.id, "event": due.event, "attempt": due.attempts + 1, "data": due.payload},
            sort_keys=True,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(due.secret, body, int(self.clock())),
            "Rankloop-Event": due.event,
            "Rankloop-Delivery": str(due.id),
            "User-Agent": "rankloop-webhooks",
        }
        code: int | None = None
        error: str | None = None
        try:
            response = self.client.post(due.url, content=body, headers=headers)
            code = response.status_code
            if not 200 <= code < 300:
                error = response.text[:300]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with Session(self.engine) as session:
            status = record_attempt(session=session, delivery_id=due.id, code=code, error=error).status
        log = logger.info if status == "delivered" else logger.warning
        log("webhook %d %s delivery %d: %s (%s)", due.hook_id, due.event, due.id, status, code or error)

    def _count_rankings(self, hooks: list[Webhook]) -> None:
        """`rankings.new` for each hook every `every` new rankings by people (counted from its first look)."""
        with Session(self.engine) as session:
            count = people_rankings(session=session)
            for hook in hooks:
                if "rankings.new" not in hook.events:
                    continue
                seen = hook.state.get("rankings_seen")
                if seen is not None and count - seen >= hook.every:
                    payload = {"rankings": count, "new": count - seen}
                    queue_for_hook(
                        session=session, hook_id=id_of(hook), event="rankings.new", payload=payload
                    )
                if seen is None or count - seen >= hook.every or count < seen:
                    save_state(
                        session=session, hook_id=id_of(hook), state={**hook.state, "rankings_seen": count}
                    )
            session.commit()

    def _floor_due(self) -> bool:
        now = time.monotonic()
        if self._floor_checked is not None and now - self._floor_checked < self.floor_every:
            return False
        self._floor_checked = now
        return True

    def _check_floors(self, hooks: list[Webhook]) -> None:
        """`labeler.below_floor` once per labeler each time they fall under a floor (reliability or gold)."""
        with read_session(self.engine) as session:
            under = {q.row.name: q.concerns for q in labeler_quality(session=session) if q.concerns}
        with Session(self.engine) as session:
            for hook in hooks:
                if "labeler.below_floor" not in hook.events:
                    continue
                reported = set(hook.state.get("below_floor", []))
                for name in sorted(set(under) - reported):
                    payload = {"labeler": name, "reasons": under[name]}
                    queue_for_hook(
                        session=session, hook_id=id_of(hook), event="labeler.below_floor", payload=payload
                    )
                save_state(
                    session=session, hook_id=id_of(hook), state={**hook.state, "below_floor": sorted(under)}
                )
            session.commit()

    def start(self) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.run_once()
                except Exception:
                    logger.exception("webhook dispatcher failed; continuing")

        thread = threading.Thread(target=loop, name="webhooks", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
