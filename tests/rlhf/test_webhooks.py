"""Webhooks: events queued with the change that makes them, delivered signed to a receiver on loopback (the docs'
example receiver, which refuses a replay), retried with a doubling wait, given up after the last try, claimed by
one replica only, and the periodic `rankings.new` event."""

from __future__ import annotations

import runpy
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from labeler.records.job_rows import finish_job, open_job
from labeler.records.webhooks import (
    FIRST_RETRY_SECONDS,
    MAX_ATTEMPTS,
    WebhookError,
    add_webhook,
    claim,
    due_deliveries,
    queue_event,
    record_attempt,
)
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import PageChoices, submit_leased
from labeler.store.tables import WebhookDelivery, utcnow
from labeler.store.users import add_user
from rlhf.serve.webhooks import Dispatcher, sign
from tests.labeler.helpers import make_sets
from tests.ui.conftest import free_port

EXAMPLE = runpy.run_path(
    str(Path(__file__).resolve().parents[2] / "docs" / "examples" / "webhook_receiver.py")
)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hooks.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def receiver():
    """The docs' example receiver on a free loopback port; yields (url, events received, set its secret)."""
    got: list[dict] = []
    port = free_port()
    holder: dict = {}

    def start(secret: str) -> str:
        server = EXAMPLE["serve"](port, secret, got.append)
        holder["server"] = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{port}/hook"

    yield start, got
    if "server" in holder:
        holder["server"].shutdown()


def test_a_job_ending_reaches_the_receiver_signed_and_a_replay_is_refused(engine, receiver):
    start, got = receiver
    with Session(engine) as session:
        hook, secret = add_webhook(session=session, url="http://127.0.0.1:1/x", events=["job.failed"], by="t")
    url = start(secret)
    with Session(engine) as session:
        hook.url = url
        session.add(hook)
        session.commit()
        job_id = open_job(session=session, kind="reward", params={}, host="h")
        finish_job(session=session, job_id=job_id, status="failed", error="out of memory")
    sent: list[httpx.Request] = []
    client = httpx.Client(event_hooks={"request": [sent.append]})
    assert Dispatcher(engine, client=client).run_once() == 1
    assert [e["event"] for e in got] == ["job.failed"]
    assert got[0]["data"] == {
        "job_id": job_id,
        "kind": "reward",
        "status": "failed",
        "error": "out of memory",
    }
    with Session(engine) as session:
        [row] = session.exec(select(WebhookDelivery)).all()
        assert (row.status, row.attempts, row.response_code) == ("delivered", 1, 200)
    replay = httpx.post(
        url, content=sent[0].content, headers=dict(sent[0].headers)
    )  # captured and sent again
    assert replay.status_code == 400 and "already received" in replay.text
    assert Dispatcher(engine, client=client).run_once() == 0  # nothing more to send


def test_the_example_verifier_refuses_a_bad_signature_and_an_old_timestamp():
    verifier = EXAMPLE["Verifier"]("whsec_x", clock=lambda: 10_000.0)
    body = b'{"id": 1, "event": "job.succeeded", "data": {}}'
    assert verifier.verify(sign("whsec_x", body, 10_000), body)["id"] == 1
    with pytest.raises(EXAMPLE["Refused"], match="bad signature"):
        verifier.verify(sign("whsec_other", body, 10_000), body)
    with pytest.raises(EXAMPLE["Refused"], match="replay"):
        verifier.verify(
            sign("whsec_x", body.replace(b"1", b"2", 1), 10_000 - 301), body.replace(b"1", b"2", 1)
        )


def test_a_failing_receiver_is_retried_with_a_doubling_wait_then_given_up(engine):
    with Session(engine) as session:
        add_webhook(session=session, url="http://127.0.0.1:9/down", events=["job.succeeded"], by="t")
        queue_event(session=session, event="job.succeeded", payload={"job_id": 1})
        session.commit()
        [delivery] = due_deliveries(session=session)
        assert claim(session=session, due=delivery)
        assert not claim(session=session, due=delivery)  # another replica that read it too
        now = utcnow()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            row = record_attempt(session=session, delivery_id=delivery.id, code=500, error="boom", now=now)
            if attempt < MAX_ATTEMPTS:
                wait = (row.next_at.replace(tzinfo=None) - now.replace(tzinfo=None)).total_seconds()
                assert row.status == "pending" and wait == pytest.approx(
                    FIRST_RETRY_SECONDS * 2 ** (attempt - 1)
                )
        assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
        assert due_deliveries(session=session, now=now + timedelta(days=1)) == []


def test_an_unreachable_receiver_is_recorded_and_tried_again_later(engine):
    with Session(engine) as session:
        add_webhook(session=session, url=f"http://127.0.0.1:{free_port()}/", events=["job.cancelled"], by="t")
        queue_event(session=session, event="job.cancelled", payload={})
        session.commit()
    assert Dispatcher(engine).run_once() == 1
    with Session(engine) as session:
        [row] = session.exec(select(WebhookDelivery)).all()
        assert row.status == "pending" and row.attempts == 1 and "ConnectError" in (row.error or "")


def test_new_rankings_fire_every_n_from_the_hook_s_first_look(engine, receiver):
    start, got = receiver
    with Session(engine) as session:
        hook, secret = add_webhook(
            session=session, url="http://x.invalid/", events=["rankings.new"], by="t", every=3
        )
        hook.url = start(secret)
        session.add(hook)
        session.commit()
        ana_id = add_user(session=session, name="ana", password="ana-password").id
        make_sets(session, 8, n=2)

    def rank(count: int) -> None:
        for _ in range(count):
            with Session(engine, expire_on_commit=False) as session:
                leased = lease_next_set(session=session, user_id=ana_id)
                assert leased is not None
                submit_leased(
                    session=session, lease=leased.assignment, choices=PageChoices([1, 2], [None, None])
                )

    rank(2)  # before the hook's first look: not counted
    dispatcher = Dispatcher(engine)
    dispatcher.run_once()
    rank(2)
    dispatcher.run_once()
    assert got == []
    rank(1)
    dispatcher.run_once()
    assert [(e["event"], e["data"]) for e in got] == [("rankings.new", {"rankings": 5, "new": 3})]


def test_bad_hooks_are_refused(engine):
    with Session(engine) as session:
        with pytest.raises(WebhookError, match="http"):
            add_webhook(session=session, url="ftp://example.com", events=["job.failed"], by="t")
        with pytest.raises(WebhookError, match="unknown"):
            add_webhook(session=session, url="https://example.com", events=["job.exploded"], by="t")


def test_a_labeler_under_the_floor_is_reported_once(tmp_path, receiver):
    from tests.rlhf.synthetic import LABELERS_WITH_ADVERSARY, add_ranked_sets, synthetic_store

    start, got = receiver
    url, _ = synthetic_store(tmp_path, sets=0)
    add_ranked_sets(url, 20, labelers=(*LABELERS_WITH_ADVERSARY, ("honest-c", False)))
    engine = make_engine(url)
    with Session(engine) as session:
        hook, secret = add_webhook(
            session=session, url="http://x.invalid/", events=["labeler.below_floor"], by="t"
        )
        hook.url = start(secret)
        session.add(hook)
        session.commit()
    dispatcher = Dispatcher(engine, floor_every=0.0)  # checked on every pass
    dispatcher.run_once()
    assert [(e["event"], e["data"]["labeler"]) for e in got] == [("labeler.below_floor", "adversary")]
    assert "reliability" in got[0]["data"]["reasons"][0]
    dispatcher.run_once()  # checked again: the same labeler is not reported twice
    assert len(got) == 1
