"""Labeling benchmark: 32 simulated labelers submit rankings through the app's HTTP API (gradio_client, logged
in) against a running app (tiny model, buffer full). Measures the time from submit to the next set (p50, p95)
and checks rankings stored against rankings submitted. Targets: p95 < 150 ms, zero lost or duplicated.

    .venv/bin/python bench/labeling.py [--labelers 32] [--per-labeler 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import Client
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

CURRENT = 4  # index of the hidden `current` set in the submit endpoint's outputs


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


def labeler(
    url: str, i: int, rounds: int, latencies: list[float], submitted: list[int], errors: list[str]
) -> None:
    rng = random.Random(i)
    try:
        client = Client(url, auth=(f"sim{i}", f"password-{i}"), verbose=False)
        out = client.predict(
            None,
            False,
            "",
            *([NO_RANK] * MAX_SLOTS),
            *([NOT_FLAGGED] * MAX_SLOTS),
            api_name="/submit_ranking",
        )
        for _ in range(rounds):
            current = out[CURRENT]
            if not current:
                break
            ranks = [str(r) for r in rng.sample(range(1, 5), 4)] + [NO_RANK] * (MAX_SLOTS - 4)
            start = time.perf_counter()
            out = client.predict(
                current, False, "", *ranks, *([NOT_FLAGGED] * MAX_SLOTS), api_name="/submit_ranking"
            )
            latencies.append(time.perf_counter() - start)
            submitted.append(current["set_id"])
    except Exception as exc:
        errors.append(f"labeler {i}: {exc}")


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
    import httpx

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
            latencies: list[float] = []
            submitted: list[int] = []
            errors: list[str] = []
            threads = [
                threading.Thread(
                    target=labeler, args=(url, i, args.per_labeler, latencies, submitted, errors)
                )
                for i in range(args.labelers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
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
        f"duplicated={stored - distinct} p50_ms={p50:.0f} p95_ms={p95:.0f} errors={len(errors)}"
    )


if __name__ == "__main__":
    main()
