"""Labeling benchmark: the system a team runs. Starts the real `rankloop serve` (embedded default model) as
subprocesses, with the pre-generation worker ACTIVE throughout (its buffer target is above what is waiting, so
it generates for the whole run) and, with `--train`, a reward job launched through the admin API and running in
the background. 32 labelers then work over HTTP: each logs in (logins spread over 4 s), takes a set, looks at it
for 0.5x-1.5x of `--think` seconds, submits, and goes on; 4 of them log in again half-way.

Measures submit-to-next-set latency (p50, p95), log-in latency (p95: the log-in and the page it opens), errors, and checks that every acknowledged
ranking is stored exactly once; with `--train`, also how much of the reward job was done meanwhile
(`train_progress_pct`), so a job starved by the generator shows. Targets on the 2-core machine, generator
active and a reward job running: submit p95 <= 250 ms, log-in p95 <= 1000 ms, 0 errors, 0 lost, 0 duplicated;
the same with PostgreSQL and two replicas (labelers split between them, as a proxy with sticky sessions would).
`--busy 2` runs two CPU-bound processes of another session beside it all (as another user's work would): the
generator must still write sets (`generated_sets`) and the reward job still advance (`train_progress_pct`).

    .venv/bin/python bench/labeling.py [--train] [--busy 2] [--db postgresql --replicas 2] [--generator process|thread]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from load_client import LabelingClient, wait_until_up  # noqa: E402
from results import record_result  # noqa: E402  (bench/results.py)
from sqlmodel import Session, col, func, select  # noqa: E402

from labeler.records.policies import ensure_initial_policy  # noqa: E402
from labeler.store.db import make_engine  # noqa: E402
from labeler.store.leasing import lease_next_set  # noqa: E402
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, add_prompts, submit_ranking  # noqa: E402
from labeler.store.tables import CompletionSet, Job, Prompt, Ranking, User, id_of  # noqa: E402
from labeler.store.users import add_user  # noqa: E402
from models.embedded import home_sharing_cache  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"
WORDS = [
    "the",
    "a",
    "model",
    "answer",
    "helps",
    "people",
    "who",
    "ask",
    "short",
    "clear",
    "questions",
    "about",
    "daily",
    "life",
    "and",
    "work",
]


@dataclass
class Figures:
    submit_s: list[float] = field(default_factory=list)
    submit_at: list[float] = field(default_factory=list)  # seconds into the run when each submit finished
    login_s: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)  # submission ids the app acknowledged
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0  # CPU time the web servers used during the labeling phase
    client_cpu_s: float = 0.0  # and this process, the 32 simulated browsers (on the same cores here)
    started: float = 0.0
    generated: int = 0
    trained: float = 0.0  # share of the reward job done during the labeling phase (it is really training)
    stored: int = 0
    lost: int = 0
    duplicated: int = 0


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))


def seed(url: str, labelers: int, sets: int, train_sets: int) -> None:
    """Accounts, v0 on the embedded default, `sets` waiting sets, and `train_sets` ranked ones for the reward job."""
    rng = random.Random(0)
    engine = make_engine(url)
    with Session(engine) as session:
        add_user(session=session, name="admin", password=ADMIN_PASSWORD, role="admin")
        for i in range(labelers):
            add_user(session=session, name=f"sim{i}", password=f"password-{i}")
        trainer = add_user(session=session, name="trainer", password="password-trainer")
        pv = ensure_initial_policy(session=session, base_model="default")
        add_prompts(
            session=session,
            conversations=[
                [{"role": "user", "content": f"Question {i}: {_text(rng)}?"}]
                for i in range(sets + train_sets)
            ],
        )
        prompts = session.exec(select(col(Prompt.id)).order_by(col(Prompt.id))).all()
        for prompt_id in (p for p in prompts if p is not None):
            add_completion_set(
                session=session,
                prompt_id=prompt_id,
                completions=[CompletionIn(_text(rng)) for _ in range(4)],
                policy_version_id=pv.id,
                commit=False,
            )
        session.commit()
        trainer_id = id_of(trainer)
    with Session(engine) as session:  # the trainer ranks the first `train_sets` sets: data for the reward job
        for i in range(train_sets):
            leased = lease_next_set(session=session, user_id=trainer_id)
            assert leased is not None
            order = rng.sample(range(1, 5), 4)
            ranks = {id_of(c): r for c, r in zip(leased.completions, order, strict=True)}
            submit_ranking(
                session=session,
                ranking=RankingIn(
                    set_id=id_of(leased.set), user_id=trainer_id, submission_id=f"seed-{i}", ranks=ranks
                ),
            )
    engine.dispose()


def start_replica(home: Path, port: int, db: str, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "app", "serve", "--home", str(home), "--port", str(port), "--db", db]
    cmd += ["--buffer", str(args.buffer), "--generator", args.generator]
    log = (home / f"serve-{port}.log").open("ab")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(1)


def launch_reward_job(port: int, engine) -> int:
    """Start a reward job the way an admin does: the admin tab's launch endpoint, as the admin."""
    import gradio as gr
    from gradio_client import Client

    from labeler.ui.forms import config_form
    from rlhf.train.configs import RewardConfig

    client = Client(f"http://127.0.0.1:{port}/", auth=("admin", ADMIN_PASSWORD), verbose=False)
    with gr.Blocks():  # the form's fields in order, as the page sends them
        form = config_form(RewardConfig)
    # epochs high enough that it trains through the run
    values = {name: component.value for name, component in form.items()} | {
        "epochs": 20,
        "max_pairs": 100_000,
    }
    client.predict(*values.values(), api_name="/admin_launch_reward")
    with Session(engine) as session:
        job = session.exec(select(Job).order_by(col(Job.id).desc())).first()
    assert job is not None and job.id is not None
    wait_for(lambda: _job_progress(engine, job.id) > 0, 600, "the reward job to start training")
    return job.id


def _job_progress(engine, job_id: int) -> float:
    with Session(engine) as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in ("queued", "running"):
            raise RuntimeError(
                f"the reward job ended early: {job.status if job else 'missing'} {job.error if job else ''}"
            )
        return job.progress


async def labeler(url: str, i: int, args: argparse.Namespace, figures: Figures) -> None:
    rng = random.Random(i)
    name = f"sim{i}"
    await asyncio.sleep(
        args.ramp * i / args.labelers
    )  # people do not all press "log in" in the same millisecond
    try:
        async with LabelingClient(url, name, f"password-{i}", timeout=120) as client:
            await _timed(figures.login_s, client.login())
            current = await client.next_set()
            for round_ in range(args.per_labeler):
                if current is None:
                    raise RuntimeError("no set waiting")
                await asyncio.sleep(rng.uniform(0.5 * args.think, 1.5 * args.think))
                if i < 4 and round_ == args.per_labeler // 2:
                    await _timed(figures.login_s, client.login())  # a new tab, a session that expired
                following = await _timed(figures.submit_s, client.submit(current, rng.sample(range(1, 5), 4)))
                figures.submit_at.append(time.perf_counter() - figures.started)
                figures.acked.append(current.submission_id)
                current = following
    except Exception as exc:
        figures.errors.append(f"{name}: {exc!r}")


async def _timed(into: list[float], awaitable):
    start = time.perf_counter()
    result = await awaitable
    into.append(time.perf_counter() - start)
    return result


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_generated(engine) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count(col(CompletionSet.id))).where(
                col(CompletionSet.generation_seconds).is_not(None)
            )
        ).one()


def check_stored(engine, figures: Figures) -> tuple[int, int, int]:
    """(stored, lost, duplicated) for the benchmark's labelers: acknowledged submissions missing from the store,
    and labels stored twice for one labeler and set."""
    with Session(engine) as session:
        names = {u.id: u.name for u in session.exec(select(User))}
        rows = [r for r in session.exec(select(Ranking)) if names[r.user_id].startswith("sim")]
    stored = {r.submission_id for r in rows}
    labels = [(r.user_id, r.set_id) for r in rows]
    return len(rows), len(set(figures.acked) - stored), len(labels) - len(set(labels))


def ms(values: list[float], q: int) -> float:
    if len(values) < 2:
        return 1000 * (values[0] if values else float("nan"))
    return 1000 * statistics.quantiles(values, n=100)[q - 1]


@contextlib.contextmanager
def database(kind: str, home: Path):
    if kind == "sqlite":
        yield f"sqlite:///{home / 'rankloop.db'}"
    elif kind == "postgresql":
        from tests.pgserver import create_database, throwaway_postgres

        with throwaway_postgres(fsync=True) as server:
            yield create_database(server, "bench")
    else:
        yield kind


@contextlib.contextmanager
def busy_processes(count: int):
    """`count` CPU-bound processes at normal priority, each in a session (so a scheduling group) of its own, as
    another user's work on the machine would be; killed on exit."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(count)
    ]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def run(args: argparse.Namespace, home: Path, db: str) -> Figures:
    train_sets = 120 if args.train else 0
    waiting = args.labelers * (args.per_labeler + 2)
    args.buffer = waiting + 400  # above what is waiting: the generator works for the whole run
    seed(db, args.labelers, waiting, train_sets)
    engine = make_engine(db)
    ports = [args.port + k for k in range(args.replicas)]
    replicas = [start_replica(home, port, db, args) for port in ports]
    figures = Figures()
    job_id = None
    try:
        for port, proc in zip(ports, replicas, strict=True):
            wait_until_up(port, proc)
        if args.generator != "off":
            from labeler.records.workers import lease_holder

            def generator_ready() -> bool:
                with Session(engine) as s:
                    return lease_holder(session=s, name="pregen") is not None

            wait_for(generator_ready, 300, "the generator to load the model and take its lease")
        if args.train:
            job_id = launch_reward_job(ports[0], engine)
            print(f"reward job {job_id} is training", flush=True)
        generated_before = count_generated(engine)
        trained_before = _job_progress(engine, job_id) if job_id is not None else 0.0
        urls = [f"http://127.0.0.1:{p}/" for p in ports]
        cpu_before = sum(cpu_seconds(p.pid) for p in replicas)
        client_before = cpu_seconds(os.getpid())
        start = figures.started = time.perf_counter()

        async def everyone() -> None:
            await asyncio.gather(
                *(labeler(urls[i % len(urls)], i, args, figures) for i in range(args.labelers))
            )

        asyncio.run(everyone())
        figures.wall_s = time.perf_counter() - start
        figures.server_cpu_s = sum(cpu_seconds(p.pid) for p in replicas) - cpu_before
        figures.client_cpu_s = cpu_seconds(os.getpid()) - client_before
        figures.generated = count_generated(engine) - generated_before
        if job_id is not None:  # still running (raises if it died), and how far it got meanwhile
            figures.trained = _job_progress(engine, job_id) - trained_before
    finally:
        for proc in replicas:
            proc.send_signal(signal.SIGTERM)
        for proc in replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        if job_id is not None:
            with Session(engine) as s:
                job = s.get(Job, job_id)
                pid = job.pid if job is not None else None
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
    figures.stored, figures.lost, figures.duplicated = check_stored(engine, figures)
    engine.dispose()
    return figures


def print_timeline(figures: Figures, window: float = 5.0) -> None:
    """Submit latency per `window` seconds of the run: where in the run the slow ones were."""
    buckets: dict[int, list[float]] = {}
    for at, took in zip(figures.submit_at, figures.submit_s, strict=False):
        buckets.setdefault(int(at // window), []).append(took)
    for k in sorted(buckets):
        values = buckets[k]
        print(
            f"  {k * window:4.0f}-{(k + 1) * window:.0f} s: {len(values):4d} submits, p50 {ms(values, 50):5.0f} ms, "
            f"p95 {ms(values, 95):5.0f} ms, max {1000 * max(values):5.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelers", type=int, default=32)
    parser.add_argument("--per-labeler", type=int, default=30)
    parser.add_argument("--think", type=float, default=2.0, help="mean seconds a labeler looks at a set")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds over which the labelers log in")
    parser.add_argument("--train", action="store_true", help="a reward job trains in the background")
    parser.add_argument(
        "--db", default="sqlite", help="sqlite, postgresql (a throw-away local server) or a URL"
    )
    parser.add_argument("--replicas", type=int, default=1, help="rankloop serve processes on the one store")
    parser.add_argument("--generator", choices=["process", "thread", "off"], default="process")
    parser.add_argument("--port", type=int, default=7877)
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="CPU-bound processes of another session at normal priority, running from before the app starts",
    )
    args = parser.parse_args()
    shared = Path(os.environ.get("RANKLOOP_HOME", REPO / "runs"))
    with tempfile.TemporaryDirectory() as tmp:
        home = home_sharing_cache(Path(tmp) / "home", shared)
        with database(args.db, home) as db, busy_processes(args.busy):
            figures = run(args, home, db)
    for e in figures.errors[:5]:
        print("error:", e)
    print_timeline(figures)
    kind = "sqlite" if args.db.startswith("sqlite") else "postgresql"
    record_result(
        f"RESULT labelers={args.labelers} submitted={len(figures.acked)} stored={figures.stored} "
        f"lost={figures.lost} duplicated={figures.duplicated} p50_ms={ms(figures.submit_s, 50):.0f} p95_ms={ms(figures.submit_s, 95):.0f} "
        f"login_p95_ms={ms(figures.login_s, 95):.0f} errors={len(figures.errors)} "
        f"generated_sets={figures.generated} train={'on' if args.train else 'off'} "
        f"train_progress_pct={100 * figures.trained:.1f} db={kind} "
        f"replicas={args.replicas} generator={args.generator} busy={args.busy} submits_per_s={len(figures.acked) / figures.wall_s:.1f} "
        f"server_cpu_ms_per_submit={1000 * figures.server_cpu_s / max(1, len(figures.acked)):.0f} "
        f"client_cpu_ms_per_submit={1000 * figures.client_cpu_s / max(1, len(figures.acked)):.0f}"
    )


if __name__ == "__main__":
    main()
