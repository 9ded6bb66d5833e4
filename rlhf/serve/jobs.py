"""Background jobs: training stages run as their own processes (`python -m rlhf.train.reward --config
runs/jobs/job-7.yaml`, or under `accelerate launch` when asked), never inside the web server. The settings travel
as a YAML file in the jobs folder (every field, None included: a field cleared in a form stays cleared). The job row holds status, progress, metric series,
the log tail and the error; the runner detects dead processes and marks them failed with their exit code.

    runner = JobRunner(engine=engine, db_url=url, home=Path("runs"))
    job_id = runner.start("reward", {"epochs": 2})
    runner.cancel(job_id)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.records.job_rows import (
    DISAPPEARED,
    JobError,
    active_jobs,
    cancel_job,
    get_job,
    job_status,
    open_job,
    record_check,
    set_job_pid,
)
from labeler.store.db import read_session
from labeler.store.tables import JobStatus
from rlhf.serve.monitor import Source
from rlhf.serve.pregen_process import background_env, lower_priority
from rlhf.train.configs import JOB_KINDS, STAGES

logger = logging.getLogger(__name__)
__all__ = ["JobError", "JobRunner", "Launcher", "write_job_config"]


def write_job_config(path: Path, params: dict) -> Path:
    """The job's settings as the YAML file its stage reads (`--config`): values as they are, None included, so
    the stage runs exactly what the form or the API asked for (flags cannot say "none" for an optional number)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@dataclass(frozen=True)
class Launcher:
    """How stage processes start: plain `python -m rlhf.<stage>`, or under `accelerate launch`, whose config file
    (`accelerate config`; `config_file` to name one) decides GPUs, DeepSpeed ZeRO and mixed precision.
    `processes` asks for that many data-parallel processes on this machine (one per GPU where there are GPUs,
    CPU processes over gloo where there are none)."""

    kind: Literal["python", "accelerate"] = "python"
    processes: int | None = None
    config_file: str | None = None

    def head(self, module: str) -> list[str]:
        if self.kind == "python":
            return [sys.executable, "-m", module]
        flags = ["--config_file", self.config_file] if self.config_file else []
        if self.processes and self.processes > 1:
            # accelerate's multi-process launcher (torch.distributed.run underneath): GPUs where present,
            # else CPU processes; `--cpu` instead would start a single process
            flags += ["--multi_gpu", "--num_processes", str(self.processes), "--num_machines", "1"]
        elif self.processes == 1:
            flags += ["--num_processes", "1"]
        if not self.config_file:
            flags += ["--mixed_precision", "no", "--dynamo_backend", "no"]  # the stage's config decides
        return [sys.executable, "-m", "accelerate.commands.launch", *flags, "-m", module]


def config_params(config: Any) -> dict:
    return {f.name: getattr(config, f.name) for f in fields(config)}


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


class JobRunner:
    """Starts, watches and cancels stage processes; one job of a kind at a time."""

    def __init__(self, *, engine: Engine, db_url: str, home: Path, launcher: Launcher | None = None):
        self.engine, self.db_url, self.home = engine, db_url, Path(home)
        self.launcher = launcher or Launcher()
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def log_path(self, job_id: int) -> Path:
        return self.home / "jobs" / f"job-{job_id}.log"

    def config_path(self, job_id: int) -> Path:
        return self.home / "jobs" / f"job-{job_id}.yaml"

    def command(self, kind: str, job_id: int, params: dict) -> list[str]:
        """The stage's command line; writes the job's settings file first (outside any transaction)."""
        config = write_job_config(
            self.config_path(job_id), {**params, "home": str(self.home), "db": self.db_url}
        )
        return [*self.launcher.head(STAGES[kind].module), "--job-id", str(job_id), "--config", str(config)]

    def start(self, kind: str, params: dict) -> int:
        if kind not in JOB_KINDS:
            raise JobError(f"unknown job kind {kind!r}; use one of {', '.join(JOB_KINDS)}")
        with self._lock:  # the watcher must not judge the job between its row and its process
            self._poll()
            with Session(self.engine) as session:
                job_id = open_job(session=session, kind=kind, params=params, host=socket.gethostname())
            log = self.log_path(job_id)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("w") as out:  # no transaction is open while the process starts
                proc = subprocess.Popen(
                    self.command(kind, job_id, params),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=background_env(),
                )
            lower_priority(proc.pid, own_session=True)  # training yields the CPU to the web server
            self._procs[job_id] = proc
            with Session(self.engine) as session:
                set_job_pid(session=session, job_id=job_id, pid=proc.pid)
        logger.info("started %s job %d (pid %d)", kind, job_id, proc.pid)
        return job_id

    def job_sources(self) -> list[Source]:
        """The running jobs' processes for the background monitor (rlhf/serve/monitor.py): each one's progress through
        its stage, in percent, is its work."""
        with self._lock:
            running = {job_id: proc.pid for job_id, proc in self._procs.items() if proc.poll() is None}
        return [
            Source(f"job {job_id}", pid, "% of its stage", work=functools.partial(self._percent, job_id))
            for job_id, pid in running.items()
        ]

    def _percent(self, job_id: int) -> float:
        with read_session(self.engine) as session:
            job = get_job(session=session, job_id=job_id)
            return 100.0 * job.progress if job is not None else 0.0

    def cancel(self, job_id: int) -> None:
        """Mark the job cancelled and stop its process (SIGTERM, then SIGKILL after 10 s)."""
        with self._lock, Session(self.engine) as session:
            pid = cancel_job(session=session, job_id=job_id)
            proc = self._procs.pop(job_id, None)
        if proc is not None:
            _terminate(proc)
        elif pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        """Refresh log tails and mark dead processes failed: read, close, look at processes and files, write.

        Only jobs started on this machine are judged (another replica's pid means nothing here); of those, this
        runner's own children by their exit code, others (from a restarted server) by whether the pid lives."""
        here = socket.gethostname()
        with Session(self.engine) as session:
            active = [
                job
                for job in active_jobs(session=session, also=list(self._procs))
                if job.id in self._procs or job.host in (here, None)
            ]
        seen = []  # no transaction is open while files and processes are looked at
        for job in active:
            proc = self._procs.get(job.id)
            code = proc.poll() if proc is not None else (None if _alive(job.pid) else DISAPPEARED)
            seen.append((job.id, code, _tail(self.log_path(job.id))))
        if not seen:
            return
        with Session(self.engine) as session:
            for job_id, code, tail in seen:
                record_check(session=session, job_id=job_id, log_tail=tail, exit_code=code)
                if code is not None:
                    self._procs.pop(job_id, None)
            session.commit()

    def watch(self, interval: float = 2.0) -> threading.Thread:
        """Poll in a daemon thread until `stop()`."""

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:
                    logger.exception("job watcher failed; continuing")

        thread = threading.Thread(target=loop, name="jobs", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def wait(self, job_id: int, timeout: float | None = None) -> JobStatus:
        """Block until the job's process ends (tests, command line); returns the final status."""
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.wait(timeout)
        self.poll()
        with Session(self.engine) as session:
            return job_status(session=session, job_id=job_id)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
