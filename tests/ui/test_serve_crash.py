"""The real app, killed with SIGKILL while labelers submit over HTTP, then restarted: every acknowledged ranking
is stored once, the database is intact, open leases resume, and the pre-generation process does not outlive it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import time

import psutil
from load_client import LabelingClient
from sqlmodel import Session, func, select

from labeler.store.db import make_engine
from labeler.store.tables import CompletionSet, Ranking
from tests.ui.conftest import free_port
from tests.ui.serve import seed_home, start_serve, stop

LABELERS = [f"l{i}" for i in range(8)]


async def _label_until_killed(url: str, name: str, acked: list[str]) -> None:
    rng = random.Random(name)
    async with LabelingClient(url, name, f"password-{name}", timeout=30) as client:
        await client.login()
        current = await client.next_set()
        while current is not None:
            ranks = rng.sample(range(1, 5), 4)
            try:
                following = await client.submit(current, ranks)
            except Exception:  # the server died under this request: not acknowledged
                return
            acked.append(current.submission_id)
            current = following
            await asyncio.sleep(rng.uniform(0, 0.05))


async def _load_then_kill(url: str, server_pid: int, acked: list[str]) -> str:
    async with LabelingClient(url, "holder", "password-holder") as holder:
        await holder.login()
        held = await holder.next_set()
    assert held is not None
    tasks = [asyncio.create_task(_label_until_killed(url, name, acked)) for name in LABELERS]
    deadline = time.monotonic() + 60
    while len(acked) < 40 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    os.kill(server_pid, signal.SIGKILL)  # mid-load: requests are in flight
    await asyncio.gather(*tasks)
    return held.token


def test_sigkill_mid_load_loses_nothing_acknowledged_and_leases_resume(tmp_path):
    url_db, model = seed_home(tmp_path, labelers=[*LABELERS, "holder"], sets=400)
    port = free_port()
    server = start_serve(tmp_path, port, model, "--buffer", "500")  # the generator works throughout
    children = psutil.Process(server.pid).children(recursive=True)
    assert children, "the pre-generation process did not start"
    acked: list[str] = []
    url = f"http://127.0.0.1:{port}/"
    held_set = asyncio.run(_load_then_kill(url, server.pid, acked))
    server.wait(10)
    # the generator looks for its server every 2 s, at a low priority: on a busy machine it gets little CPU
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running after the server died: {alive}"
    assert len(acked) >= 40

    with sqlite3.connect(tmp_path / "rankloop.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    engine = make_engine(url_db)
    with Session(engine) as s:
        rankings = s.exec(select(Ranking)).all()
        stored = {r.submission_id for r in rankings}
        assert set(acked) <= stored, set(acked) - stored  # every acknowledged ranking is there
        labels = [(r.user_id, r.set_id) for r in rankings]
        assert len(labels) == len(set(labels))  # none twice
        per_set = s.exec(select(Ranking.set_id, func.count(Ranking.id)).group_by(Ranking.set_id)).all()
        assert (
            max(count for _, count in per_set)
            <= 1
            == s.exec(select(func.max(CompletionSet.labels_needed))).one()
        )
    engine.dispose()

    server = start_serve(tmp_path, port, model, "--generator", "off")
    try:

        async def after_restart() -> tuple[str, str | None]:
            async with LabelingClient(url, "holder", "password-holder") as holder:
                await holder.login()
                again = await holder.next_set()
                assert again is not None
                following = await holder.submit(again, [1, 2, 3, 4])
                return again.token, following.token if following else None

        resumed, following = asyncio.run(after_restart())
    finally:
        stop(server)
    assert resumed == held_set  # the lease taken before the crash is shown again
    assert following is not None and following != held_set
