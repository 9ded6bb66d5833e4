"""Labeling benchmark: 32 simulated labelers submit rankings through the app's HTTP API (logged in, Gradio's
queue, each with its own session as a browser tab has) against a running app in its own process (tiny model,
buffer full). Measures the time from submit to the next set (p50, p95), the submits per second served, and checks
rankings stored against rankings submitted. Targets: p95 < 150 ms, zero lost or duplicated.

Each labeler looks at a set for a random 0.5x-1.5x of `--think` seconds (default 2 s) before submitting: a person
reading four answers takes tens of seconds, so 32 of these load the server like several hundred people.
`--think 0` submits back to back and measures where the server saturates instead. The clients are async HTTP in
one thread, light enough that the server, not the load generator, is what the 2 cores spend their time on.

    .venv/bin/python bench/labeling.py [--labelers 32] [--per-labeler 10] [--think 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlmodel import Session, func, select

from labeler.db import make_engine
from labeler.policies import ensure_initial_policy
from labeler.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.tables import Ranking
from labeler.ui.app import build_ui, launch
from labeler.ui.deps import UIDeps
from labeler.ui.labeling import MAX_SLOTS, NO_RANK, NOT_FLAGGED
from labeler.users import add_user
from models.policy import PolicyPool
from models.tiny import tiny_model_and_tokenizer


def seed(engine, labelers: int, sets: int) -> None:
    with Session(engine) as session:
        for i in range(labelers):
            add_user(session=session, name=f"sim{i}", password=f"password-{i}")
        pv = ensure_initial_policy(session=session, base_model="tiny")
        for i in range(sets):
            prompt = get_or_add_prompt(
                session=session, messages=[{"role": "user", "content": f"question {i}"}]
            )
            add_completion_set(
                session=session,
                prompt_id=prompt.id,
                completions=[CompletionIn(f"answer {i}.{j} " * 20) for j in range(4)],
                policy_version_id=pv.id,
                commit=False,
            )
        session.commit()


async def labeler(
    url: str,
    i: int,
    rounds: int,
    think: float,
    latencies: list[float],
    submitted: list[int],
    errors: list[str],
) -> None:
    """One labeler: log in, take a set, think, submit, and time each submit until the next set is back."""
    rng = random.Random(i)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        try:
            login = await http.post("login", data={"username": f"sim{i}", "password": f"password-{i}"})
            login.raise_for_status()
            session = uuid.uuid4().hex
            out = await call(
                http, session, [None, False, "", *([NO_RANK] * MAX_SLOTS), *([NOT_FLAGGED] * MAX_SLOTS)]
            )
            for _ in range(rounds):
                current = next((o for o in out if isinstance(o, dict) and "set_id" in o), None)
                if not current:
                    break
                await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
                ranks = [str(r) for r in rng.sample(range(1, 5), 4)] + [NO_RANK] * (MAX_SLOTS - 4)
                start = time.perf_counter()
                out = await call(http, session, [current, False, "", *ranks, *([NOT_FLAGGED] * MAX_SLOTS)])
                latencies.append(time.perf_counter() - start)
                submitted.append(current["set_id"])
        except Exception as exc:
            errors.append(f"labeler {i}: {exc!r}")


async def call(http: httpx.AsyncClient, session: str, data: list) -> list:
    """Gradio's HTTP API, as a browser's fetch would use it: join the queue, then read the event's result."""
    joined = await http.post("gradio_api/call/submit_ranking", json={"data": data, "session_hash": session})
    joined.raise_for_status()
    event = joined.json()["event_id"]
    async with http.stream("GET", f"gradio_api/call/submit_ranking/{event}") as stream:
        kind = None
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                if kind == "error":
                    raise RuntimeError(f"submit failed: {payload}")
                return payload
    raise RuntimeError("the event stream ended without a result")


async def run_labelers(url: str, args: argparse.Namespace) -> tuple[list[float], list[int], list[str], float]:
    latencies: list[float] = []
    submitted: list[int] = []
    errors: list[str] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(
            labeler(url, i, args.per_labeler, args.think, latencies, submitted, errors)
            for i in range(args.labelers)
        )
    )
    return latencies, submitted, errors, time.perf_counter() - start


def serve(db: str, home: str, port: int) -> None:
    """The app under test, in its own process so client threads do not share its interpreter."""
    engine = make_engine(db)
    deps = UIDeps(engine=engine, home=Path(home), pool=PolicyPool(*tiny_model_and_tokenizer()))
    demo = launch(build_ui(deps), deps, port=port, block=False)
    try:
        while True:
            time.sleep(1)
    finally:
        demo.close()


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"app did not start at {url}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labelers", type=int, default=32)
    parser.add_argument("--per-labeler", type=int, default=10)
    parser.add_argument("--port", type=int, default=7877)
    parser.add_argument(
        "--think", type=float, default=2.0, help="mean seconds a labeler looks at a set (0: back to back)"
    )
    parser.add_argument("--serve", nargs=2, metavar=("DB", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.port)
        return
    url = f"http://127.0.0.1:{args.port}/"
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(db)
        seed(engine, args.labelers, args.labelers * (args.per_labeler + 2))
        server = subprocess.Popen([sys.executable, __file__, "--serve", db, tmp, "--port", str(args.port)])
        try:
            wait_until_up(url)
            latencies, submitted, errors, wall = asyncio.run(run_labelers(url, args))
        finally:
            server.terminate()
            server.wait(30)
        with Session(engine) as session:
            stored = session.exec(select(func.count(Ranking.id))).one()
            distinct = session.exec(select(func.count(func.distinct(Ranking.set_id)))).one()
    for e in errors[:5]:
        print("error:", e)
    q = statistics.quantiles(latencies, n=100)
    p50, p95 = q[49] * 1000, q[94] * 1000
    print(
        f"{len(submitted)} submits by {args.labelers} labelers: p50 {p50:.0f} ms, p95 {p95:.0f} ms; stored {stored} ({distinct} distinct sets)"
    )
    print(
        f"RESULT labelers={args.labelers} submitted={len(submitted)} stored={stored} lost={len(submitted) - stored} "
        f"duplicated={stored - distinct} p50_ms={p50:.0f} p95_ms={p95:.0f} errors={len(errors)} "
        f"think_s={args.think} submits_per_s={len(submitted) / wall:.1f}"
    )


if __name__ == "__main__":
    main()
