"""`rankloop serve` as users start it serves the REST API and sends webhooks: the docs' example client labels
through `/api/v1` with a token, and the server's dispatcher tells a loopback receiver (the docs' example) about
the new rankings, signed."""

from __future__ import annotations

import runpy
import threading
import time
from pathlib import Path

from sqlmodel import Session

from labeler.records.webhooks import add_webhook
from labeler.store.api_tokens import create_token
from labeler.store.db import make_engine
from labeler.store.tables import Webhook
from tests.ui.conftest import free_port
from tests.ui.serve import seed_home, start_serve, stop

DOCS = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_the_served_app_labels_through_the_api_and_sends_webhooks(tmp_path):
    url, model = seed_home(tmp_path, labelers=["ana"], sets=3)
    received: list[dict] = []
    hook_port = free_port()
    engine = make_engine(url)
    with Session(engine) as session:
        token = create_token(session=session, user="ana").secret
        hook, secret = add_webhook(
            session=session,
            url=f"http://127.0.0.1:{hook_port}/",
            events=["rankings.new"],
            by="admin",
            every=2,
        )
        hook_id = hook.id
    receiver = runpy.run_path(str(DOCS / "webhook_receiver.py"))["serve"](hook_port, secret, received.append)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    proc = start_serve(tmp_path, port, model, "--generator", "off")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the dispatcher's first look at the count
            with Session(engine) as session:
                if "rankings_seen" in (session.get(Webhook, hook_id).state or {}):
                    break
            time.sleep(0.5)
        label = runpy.run_path(str(DOCS / "api_client.py"))["label"]
        assert label(f"http://127.0.0.1:{port}", token, 3) == 3
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            time.sleep(0.5)
        # one event for the first two or all three (the dispatcher looks every 2 s)
        assert received and received[0]["event"] == "rankings.new" and received[0]["data"]["new"] in (2, 3)
    finally:
        stop(proc)
        receiver.shutdown()
        engine.dispose()
