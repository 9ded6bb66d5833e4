"""Pre-generation in its own process, at a lower OS priority than the web server (yet a guaranteed share of the
CPU: `lower_priority`), so a model call can never starve the server of CPU or of the interpreter lock. `rankloop serve` starts and supervises it:

    python -m rlhf.serve.pregen_process --home runs [--db URL] [--n 4] [--buffer 8] [--parent-pid PID]

The process loads the base model and the current adapter itself, runs `PregenWorker` (which takes the `pregen`
worker lease, so one replica of several generates), hands the lease over on SIGTERM, and exits when the server
that started it is gone. Its log goes to HOME/logs/generator.log. It runs in a session of its own, so the
terminal's Ctrl-C reaches only the server, which stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rlhf.serve.monitor import Source
from rlhf.train.configs import ANSWER_TOKENS

logger = logging.getLogger(__name__)
# Background processes run as SCHED_BATCH at nice 10, each in a scheduling group of its own at nice 10: about a
# tenth of a core's weight against a nice-0 process. Measured on 2 cores beside 3 CPU-bound nice-0 processes of
# another session (one background busy loop kept to core 1, 15 s each): SCHED_IDLE or nice 19 got 0.03 cores
# (waiting 96% of the time: the generator once wrote 0 sets in 20 min), nice 10 0.19 cores, nice 5 0.50.
NICENESS = 10


def lower_priority(pid: int, niceness: int = NICENESS, *, own_session: bool = False) -> None:
    """Make `pid` yield the CPU to the web server yet still progress when other processes fill the machine; a
    no-op where not supported.

    On Linux the process becomes SCHED_BATCH (threads it starts later inherit it: no wake-up preemption of the
    server's threads) at nice `niceness`. SCHED_IDLE, used before, ran only on CPU time nobody else wanted: any
    other busy process starved the generator and every job, with nothing on the dashboard (rlhf/serve/monitor.py now
    says so when it happens). Elsewhere it only gets the nice value.

    `own_session`: the process was started in a session of its own (`start_new_session=True`). Where Linux
    groups the CPU by session (`kernel.sched_autogroup_enabled`), a new session is a new scheduling group that
    gets as much CPU as the server's whole group whatever its processes' priorities, so the group's own nice
    value (`/proc/PID/autogroup`) is lowered too. Never for a process in the server's session: that would
    lower the server's share."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except (AttributeError, OSError) as exc:
        logger.warning("could not lower the priority of pid %d: %s", pid, exc)
    if hasattr(os, "SCHED_BATCH"):
        try:
            os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
        except OSError as exc:
            logger.warning("could not make pid %d a batch process: %s", pid, exc)
    if own_session:
        lower_group_priority(pid, niceness)
    keep_a_core_free(pid)


def keep_a_core_free(pid: int) -> None:
    """Keep `pid` (and the threads it starts later) off the first core when there are several, so the web server
    and the database always find one core that no model process has filled with its work: with a generator and
    a training job both busy on 2 cores, submit p50 on PostgreSQL with 2 replicas was 253-312 ms, and 72-80 ms
    with this (bench/labeling.py). Costs background work one core of N when the server is idle."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(cores) < 2:
        return
    try:
        os.sched_setaffinity(pid, cores - {min(cores)})
    except OSError as exc:
        logger.warning("could not keep pid %d off core %d: %s", pid, min(cores), exc)


def lower_group_priority(pid: int, niceness: int) -> None:
    """Set the nice value of `pid`'s scheduling group (Linux autogroup); nothing where there is none."""
    autogroup = Path(f"/proc/{pid}/autogroup")
    if not autogroup.exists():
        return
    try:
        autogroup.write_text(str(niceness))
    except OSError as exc:
        logger.warning("could not lower the scheduling group priority of pid %d: %s", pid, exc)


def background_env() -> dict[str, str]:
    """The environment of a background model process: half the cores for its math threads (unless set), so it
    and a training job do not oversubscribe the CPU (OpenMP threads spin while they wait for a core)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
    return env


def build_parser() -> argparse.ArgumentParser:
    from rlhf.serve.serving import add_model_args

    parser = argparse.ArgumentParser(
        prog="python -m rlhf.serve.pregen_process", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--home", default=os.environ.get("RANKLOOP_HOME", "runs"))
    parser.add_argument("--db", help="database URL (default: sqlite:///HOME/rankloop.db)")
    parser.add_argument("--n", type=int, default=4, help="completions per set")
    parser.add_argument("--buffer", type=int, default=None, help="sets kept ready (default: 2 per labeler)")
    parser.add_argument("--max-new-tokens", type=int, default=ANSWER_TOKENS)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="worker lease; a replica takes over this long after a death",
    )
    add_model_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from labeler.store.db import default_url, make_engine
    from models.generation import SamplingParams
    from rlhf.serve.pregen import PregenConfig, PregenWorker
    from rlhf.serve.serving import ModelOptions, generation_backend, load_pool

    engine = make_engine(args.db or default_url(Path(args.home)))
    options = ModelOptions.of(vars(args))
    backend = generation_backend(options, engine, load_pool(options, engine))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    worker = PregenWorker(
        engine=engine,
        pool=backend,
        config=PregenConfig(
            buffer=args.buffer, n=args.n, sampling=sampling, lease_seconds=args.lease_seconds
        ),
    )
    done = threading.Event()

    def quit_now(*_: object) -> None:
        # A batch in flight is dropped (nothing of it was written); the lease goes to another replica at once.
        try:
            worker.release_lease()
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, quit_now)
    signal.signal(signal.SIGINT, quit_now)
    worker.start()
    logger.info("pre-generation running (pid %d, holder %s)", os.getpid(), worker.holder)
    while not done.wait(2.0):
        if args.parent_pid and os.getppid() != args.parent_pid:
            logger.info("the server (pid %d) is gone; stopping", args.parent_pid)
            quit_now()
    return 0


class GeneratorProcess:
    """Starts `python -m rlhf.serve.pregen_process` at a low priority, restarts it if it dies, stops it with the server."""

    def __init__(self, argv: list[str], log_path: Path, *, max_backoff: float = 60.0):
        self.argv, self.log_path, self.max_backoff = argv, Path(log_path), max_backoff
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rlhf.serve.pregen_process",
            *self.argv,
            "--parent-pid",
            str(os.getpid()),
        ]

    def sources(self, work: Callable[[], float]) -> list[Source]:
        """The running process for the background monitor (rlhf/serve/monitor.py), `work` counting the sets written."""
        proc = self.proc
        alive = proc is not None and proc.poll() is None
        return [Source("generator", proc.pid, "sets", work)] if alive and proc is not None else []

    def _spawn(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=background_env(),
                start_new_session=True,
            )
        # Its own session, so its own scheduling group at a low priority, like a training job: inside the
        # server's group it drew on the server's share and left a reward job 12% of a core (173 s per step).
        lower_priority(proc.pid, own_session=True)
        logger.info(
            "pre-generation process started (pid %d, nice +%d); log: %s", proc.pid, NICENESS, self.log_path
        )
        return proc

    def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self.proc = self._spawn()
            code = self.proc.wait()
            if self._stop.is_set():
                return
            failures += 1
            delay = min(self.max_backoff, 2.0**failures)
            logger.error("pre-generation process exited with code %s; restarting in %.0fs", code, delay)
            self._stop.wait(delay)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._supervise, name="pregen-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the process hands its lease over and exits), then SIGKILL after `timeout`."""
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)


if __name__ == "__main__":
    sys.exit(main())
