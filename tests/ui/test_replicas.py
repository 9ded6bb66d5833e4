"""Two `rankloop serve` replicas on one store (a SQLite file, and PostgreSQL): labelers on either are served
correctly, exactly one replica generates, and the other takes generation over when that one dies."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import psutil
from load_client import LabelingClient
from sqlmodel import Session, col, func, select

from labeler.records.workers import lease_holder
from labeler.store.db import make_engine
from labeler.store.tables import CompletionSet, Ranking, User, utcnow
from tests.ui.conftest import free_port
from tests.ui.serve import seed_home, start_serve, stop

LABELERS = [f"l{i}" for i in range(8)]


async def _label(url: str, name: str, rounds: int, acked: list[tuple[str, str]]) -> None:
    rng = random.Random(name)
    async with LabelingClient(url, name, f"password-{name}") as client:
        await client.login()
        current = await client.next_set()
        for _ in range(rounds):
            assert current is not None
            following = await client.submit(current, rng.sample(range(1, 5), 4))
            acked.append((name, current.submission_id))
            current = following


def _holder_pid(engine) -> int | None:
    with Session(engine) as s:
        holder = lease_holder(session=s, name="pregen")
    return int(holder.split(":")[1]) if holder else None


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()) is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_replicas_share_labelers_and_one_generates(tmp_path, store_url):
    db = None if store_url.startswith("sqlite") else store_url
    url_db, model = seed_home(tmp_path, labelers=LABELERS, sets=60, db=db, labels_needed=2)
    ports = [free_port(), free_port()]
    extra = ("--buffer", "200", "--worker-lease-seconds", "3", *(["--db", db] if db else []))
    replicas = [start_serve(tmp_path, port, model, *extra) for port in ports]
    engine = make_engine(url_db)
    try:
        generators = {
            r.pid: [c.pid for c in psutil.Process(r.pid).children(recursive=True)] for r in replicas
        }
        # the generator process loads the model first: over a minute on cores shared with a benchmark
        holder = _wait_for(lambda: _holder_pid(engine), 180, "a generator to take the lease")
        owner = next(pid for pid, kids in generators.items() if holder in kids)

        acked: list[tuple[str, str]] = []

        async def label_on_both() -> None:
            urls = [f"http://127.0.0.1:{p}/" for p in ports]
            await asyncio.gather(*(_label(urls[i % 2], name, 6, acked) for i, name in enumerate(LABELERS)))

        asyncio.run(label_on_both())
        with Session(engine) as s:
            names = {u.id: u.name for u in s.exec(select(User))}
            rankings = s.exec(select(Ranking)).all()
            stored = [(names[r.user_id], r.submission_id) for r in rankings]
            assert len({(r.user_id, r.set_id) for r in rankings}) == len(
                rankings
            )  # no labeler twice on a set
            per_set = s.exec(
                select(Ranking.set_id, func.count(col(Ranking.id))).group_by(Ranking.set_id)
            ).all()
        assert sorted(stored) == sorted(acked) and len(stored) == 48 == len(set(stored))
        assert max(count for _, count in per_set) <= 2
        assert _holder_pid(engine) == holder  # one generator held it all along (renewed, never handed over)

        # The generating replica dies with its generator, without handing the lease over.
        for pid in [owner, *generators[owner]]:
            os.kill(pid, signal.SIGKILL)
        killed_at = utcnow()  # any set written after this is the new holder's
        other = next(pid for pid in generators if pid != owner)
        taken = _wait_for(
            lambda: p if (p := _holder_pid(engine)) in generators[other] else None,
            30,
            "the other replica to take over",
        )
        # The buffer may be full by now (the tiny model fills 200 sets in seconds): two labelers on the surviving
        # replica finish some sets, which makes room, so the new holder has sets to write.
        survivor = f"http://127.0.0.1:{ports[[r.pid for r in replicas].index(other)]}/"

        async def make_room() -> None:
            await asyncio.gather(*(_label(survivor, name, 3, []) for name in LABELERS[:2]))

        asyncio.run(make_room())
        _wait_for(
            lambda: True if _sets_since(engine, killed_at) else None, 60, "the new holder to write sets"
        )
        assert taken in generators[other]
    finally:
        engine.dispose()
        for r in replicas:
            stop(r)


def _sets_since(engine, since) -> int:
    with Session(engine) as s:
        return s.exec(
            select(func.count(col(CompletionSet.id))).where(col(CompletionSet.created_at) > since)
        ).one()
