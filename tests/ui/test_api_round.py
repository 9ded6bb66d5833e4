"""A round launched through the REST API on the real served app with its job runner and webhook dispatcher: the job
runs to success on the tiny model, its status and metric series read back through the API, a loopback receiver
gets `job.succeeded` and `version.switched` signed, and switching back through the API is recorded by name."""

from __future__ import annotations

import runpy
import threading
import time
from pathlib import Path

import httpx
from sqlmodel import Session

from labeler.api.app import rest_app
from labeler.records.webhooks import add_webhook
from labeler.store.api_tokens import create_token
from labeler.store.db import make_engine
from labeler.store.users import add_user
from labeler.ui.app import build_ui, launch
from labeler.ui.deps import UIDeps
from rlhf.serve.jobs import JobRunner
from rlhf.serve.webhooks import Dispatcher
from tests.rlhf.ppo_helpers import ppo_store
from tests.rlhf.test_dpo import rank_some_sets
from tests.ui.conftest import free_port
from tests.ui.test_admin_jobs import TINY

EXAMPLE = runpy.run_path(
    str(Path(__file__).resolve().parents[2] / "docs" / "examples" / "webhook_receiver.py")
)


def wait_until(check, timeout: float = 600.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(1)
    raise AssertionError(f"not done after {timeout} s")


def test_a_round_launched_through_the_api_reports_through_the_api_and_the_webhooks(tmp_path):
    url, _ = ppo_store(tmp_path)
    rank_some_sets(url)
    engine = make_engine(url)
    received: list[dict] = []
    port = free_port()
    with Session(engine) as s:
        add_user(session=s, name="admin", password="admin-password-1", role="admin")
        token = create_token(session=s, user="admin", name="pipeline").secret
        events = ["job.succeeded", "job.failed", "job.cancelled", "version.switched", "version.refused"]
        _, secret = add_webhook(session=s, url=f"http://127.0.0.1:{port}/hook", events=events, by="admin")
    server = EXAMPLE["serve"](port, secret, received.append)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runner = JobRunner(engine=engine, db_url=url, home=tmp_path)
    runner.watch(interval=1.0)
    hooks = Dispatcher(engine, interval=0.5)
    hooks.start()
    deps = UIDeps(engine=engine, home=tmp_path, runner=runner)
    app_port = free_port()
    demo = launch(build_ui(deps), deps, port=app_port, block=False, api=rest_app(engine, runner))
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{app_port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    try:
        started = api.post("/jobs", json={"kind": "round", "config": TINY["round"]})
        assert started.status_code == 201, started.text
        job_id = started.json()["id"]
        assert api.post("/jobs", json={"kind": "round"}).status_code == 409  # one round at a time
        job = wait_until(
            lambda: (j := api.get(f"/jobs/{job_id}").json())["status"] not in ("queued", "running") and j
        )
        assert job["status"] == "succeeded", (job["error"], job["log_tail"][-2000:])
        assert job["progress"] == 1.0 and job["metrics"]
        wait_until(
            lambda: {"job.succeeded", "version.switched"} <= {e["event"] for e in received}, timeout=30
        )
        by_event = {e["event"]: e["data"] for e in received}
        assert by_event["job.succeeded"]["job_id"] == job_id and by_event["version.switched"]["version"] == 1
        versions = api.get("/versions").json()
        assert [(v["version"], v["current"], v["parent"]) for v in versions] == [
            (0, False, None),
            (1, True, 0),
        ]
        back = api.post("/versions/0/switch")
        assert (
            back.status_code == 200
            and back.json()["current"]
            and back.json()["made_current_by_hand"] == ["admin"]
        )
        wait_until(lambda: any(e["data"].get("version") == 0 for e in received), timeout=30)
        assert api.post("/versions/9/switch").status_code == 404
        again = api.post("/jobs", json={"kind": "round", "config": TINY["round"]}).json()["id"]
        cancelled = api.post(f"/jobs/{again}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert api.post(f"/jobs/{again}/cancel").status_code == 409  # already ended
        wait_until(lambda: "job.cancelled" in {e["event"] for e in received} or None, timeout=30)
    finally:
        api.close()
        demo.close()
        hooks.stop()
        runner.stop()
        server.shutdown()
