"""Store benchmark: `--rankings` rankings (default 100,000) of sets of 5 answers by 10 labelers (a quarter of the
sets, spread evenly, ranked twice, so agreement and reliability have overlap to fit), each through the labelers'
submit path; then conversion to pairs (10 votes a ranking: 1M at the default), the Parquet export, and the admin
pages on that store through the real app: `rankloop serve` (generator off: this isolates the store side by design)
with an admin logged in over HTTP, timing what the admin's browser waits for: the admin pages opening (every tab
filled: dashboard, Browse, the Export preview; cold: the first open after the server starts, warm: later ones),
`figures_computed_s` (from that first open until the dashboard shows the store-wide figures, computed in the
server's background), "Refresh now" (starts a recomputation, waits at most a second), Browse's ranked-set list
(all, and only disputed sets) and one set's detail, and the Export tab's preview.

Targets on a 2-core CPU: >= 1,000 submits/s, >= 200,000 pairs/s, the export of 100,000 rankings < 10 s, and each
admin page action <= 1 s at 10k and 100k rankings.

    .venv/bin/python bench/store.py [--rankings 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from load_client import wait_until_up  # bench/load_client.py
from results import record_result  # bench/results.py: the line, kept in bench/results/
from sqlalchemy import insert
from sqlmodel import Session
from tqdm import tqdm

from labeler.io.export import export_preferences
from labeler.labels.dataset import load_prompts, load_set_rankings, records_from_sets
from labeler.labels.pairs import PairSettings
from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import Assignment, Completion, CompletionSet, Prompt, id_of, utcnow
from labeler.store.users import add_user

REPO = Path(__file__).resolve().parents[1]
ANSWERS = 5
LABELERS = 10
TWICE = 0.25  # ranked by a second labeler: this share of the sets
ADMIN_PASSWORD = "bench-admin-password"
FLAGS = ("nonsensical", "harmful", "off_topic")


def plan(rankings: int) -> list[tuple[int, int]]:
    """(set number, labeler number) for each ranking: every set once, a quarter of them (spread evenly) twice."""
    sets = round(rankings / (1 + TWICE))
    jobs = [(s, s % LABELERS) for s in range(sets)]
    twice = rankings - sets
    jobs += [(s, (s + 1) % LABELERS) for s in (i * sets // twice for i in range(twice))]
    return jobs


def seed_store(session: Session, jobs: list[tuple[int, int]], users: list[int], version_id: int) -> None:
    """Bulk-create the sets and their answers, and assign each (set, labeler) of `jobs` (setup, not timed)."""
    now = utcnow()
    count = 1 + max(s for s, _ in jobs)
    twice = {s for s, _ in jobs[count:]}  # the sets ranked by two labelers
    session.execute(
        insert(Prompt),
        [
            {
                "messages": [{"role": "user", "content": f"prompt {i}: say something about {i % 97}"}],
                "content_hash": f"h{i}",
                "source": "bench",
                "split": "train",
                "created_at": now,
            }
            for i in range(count)
        ],
    )
    session.execute(
        insert(CompletionSet),
        [
            {
                "prompt_id": i + 1,
                "policy_version_id": version_id,
                "origin": "generated",
                "source": "",
                "sampling": {},
                "labels_needed": 2 if i in twice else 1,
                "created_at": now,
            }
            for i in range(count)
        ],
    )
    session.execute(
        insert(Completion),
        [
            {
                "set_id": s + 1,
                "position": j,
                "text": f"answer {s}.{j} " * 8,
                "token_count": 16,
                "finish_reason": "eos",
            }
            for s in range(count)
            for j in range(ANSWERS)
        ],
    )
    later = now.replace(year=now.year + 1)
    session.execute(
        insert(Assignment),
        [
            {
                "set_id": s + 1,
                "user_id": users[u],
                "display_order": answer_ids(s),
                "leased_at": now,
                "lease_expires_at": later,
            }
            for s, u in jobs
        ],
    )
    session.commit()


def answer_ids(s: int) -> list[int]:
    return [ANSWERS * s + j + 1 for j in range(ANSWERS)]


def labeler_ranks(rng: random.Random, s: int, noise: float) -> dict[int, int]:
    """A labeler's ranks: the set's true order (answer 0 best) with each neighbouring pair swapped at `noise`."""
    order = answer_ids(s)
    for i in range(ANSWERS - 1):
        if rng.random() < noise:
            order[i], order[i + 1] = order[i + 1], order[i]
    return {c: r for r, c in enumerate(order, start=1)}


def submit_all(session: Session, jobs: list[tuple[int, int]], users: list[int]) -> float:
    """Every ranking through `submit_ranking`, as the page's submit stores it; returns the seconds taken."""
    rng = random.Random(0)
    start = time.perf_counter()
    for s, u in tqdm(jobs, desc="submit", mininterval=2):
        ranks = labeler_ranks(rng, s, noise=0.1 + 0.04 * u)  # labelers differ in care
        flags = {}
        if rng.random() < 0.01:  # the worst answer flagged instead of ranked
            worst = max(ranks, key=ranks.__getitem__)
            flags = {worst: rng.choice(FLAGS)}
            del ranks[worst]
        submit_ranking(
            session=session,
            ranking=RankingIn(
                set_id=s + 1,
                user_id=users[u],
                submission_id=uuid.uuid4().hex,
                ranks=ranks,
                flags=flags,
                seconds_spent=rng.uniform(5, 60),
            ),
        )
    return time.perf_counter() - start


class Admin:
    """An admin's browser on the running app: logged in, calling the admin pages' named events."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=600)
        self.session_hash = uuid.uuid4().hex

    def login(self) -> None:
        response = self.http.post("login", data={"username": "admin", "password": ADMIN_PASSWORD})
        response.raise_for_status()

    def call(self, api_name: str, data: list) -> tuple[float, list]:
        """Seconds the event took as the browser waits for it, and its outputs."""
        start = time.perf_counter()
        response = self.http.post(
            f"gradio_api/run/{api_name}", json={"data": data, "session_hash": self.session_hash}
        )
        seconds = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"{api_name} failed ({response.status_code}): {response.text[:300]}")
        return seconds, response.json()["data"]

    def wait_for_figures(self) -> None:
        """Until the dashboard shows figures computed and none being recomputed (one page open a second)."""
        while True:
            _, outputs = self.call("admin_open_page", [])
            page = json.dumps(outputs)
            if "Computing the store-wide figures" not in page and "Recomputing now" not in page:
                return
            time.sleep(1)


@contextlib.contextmanager
def serving(home: Path, db: str, port: int):
    """`rankloop serve` on the store, generator off; stopped on exit."""
    cmd = [sys.executable, "-m", "app", "serve", "--home", str(home), "--port", str(port), "--db", db]
    log = (home / "serve.log").open("ab")
    proc = subprocess.Popen([*cmd, "--generator", "off"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(port, proc, timeout=300)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


class Figures(dict[str, float]):
    """Named seconds, each printed as it is measured."""

    def __setitem__(self, name: str, seconds: float) -> None:
        print(f"{name}: {seconds:.3f}", flush=True)
        super().__setitem__(name, seconds)


def time_admin_pages(home: Path, db: str, port: int) -> dict[str, float]:
    """Seconds for each admin action on the running app (the warm figures: the slowest of three)."""
    figures = Figures()
    with serving(home, db, port) as url:
        admin = Admin(url)
        admin.login()
        started = time.perf_counter()
        figures["admin_open_cold_s"], _ = admin.call("admin_open_page", [])
        admin.wait_for_figures()
        figures["figures_computed_s"] = time.perf_counter() - started  # in the server's background thread
        figures["admin_open_s"] = max(admin.call("admin_open_page", [])[0] for _ in range(3))
        figures["dashboard_refresh_now_s"], _ = admin.call("admin_dashboard", [])
        admin.wait_for_figures()  # the recomputation it started, before the other pages are timed
        figures["browse_sets_s"] = max(
            admin.call("admin_browse_sets", ["", None, False, False])[0] for _ in range(3)
        )
        figures["browse_disputed_s"], rows = admin.call("admin_browse_sets", ["", None, False, True])
        first = rows[0]["data"][0][0] if rows[0]["data"] else 1
        figures["browse_set_s"] = max(admin.call("admin_browse_set", [first])[0] for _ in range(3))
        preview = ["all", False, "drop", 0, "equal"]  # the Export form's defaults
        figures["export_preview_s"] = max(admin.call("admin_export_preview", preview)[0] for _ in range(3))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=7891)
    args = parser.parse_args()
    jobs = plan(args.rankings)
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'rankloop.db'}"
        engine = make_engine(db)
        with Session(engine) as session:
            add_user(session=session, name="admin", password=ADMIN_PASSWORD, role="admin")
            users = [
                id_of(add_user(session=session, name=f"labeler{i}", password=f"password-{i}"))
                for i in range(LABELERS)
            ]
            start = time.perf_counter()
            version = ensure_initial_policy(session=session, base_model="default")
            seed_store(session, jobs, users, id_of(version))
            print(f"setup: {len(jobs)} assignments in {time.perf_counter() - start:.1f}s")
            submit_s = submit_all(session, jobs, users)
            print(f"submits: {len(jobs) / submit_s:,.0f}/s ({submit_s:.1f}s)")

            start = time.perf_counter()
            loaded = load_set_rankings(session=session)
            prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in loaded})
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            records = records_from_sets(loaded, prompts, PairSettings())
            convert_s = time.perf_counter() - start
            print(
                f"pairs: {len(records):,} converted at {len(records) / convert_s:,.0f}/s (store read {load_s:.1f}s)"
            )
            start = time.perf_counter()
            result = export_preferences(session=session, out=Path(tmp) / "export", fmt="parquet")
            export_s = time.perf_counter() - start
            print(f"export: {result.pairs:,} pairs to Parquet in {export_s:.1f}s (includes the store read)")
        engine.dispose()
        pages = time_admin_pages(Path(tmp), db, args.port)
    record_result(
        f"RESULT rankings={len(jobs)} submits_per_s={len(jobs) / submit_s:.0f} "
        f"pairs_per_s={len(records) / convert_s:.0f} store_read_s={load_s:.2f} export_pairs={result.pairs} "
        f"export_s={export_s:.2f} " + " ".join(f"{k}={v:.3f}" for k, v in pages.items())
    )


if __name__ == "__main__":
    main()
