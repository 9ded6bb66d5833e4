"""Background model processes (the generator, training jobs) yield the CPU to the web server, and neither
starves the other: each is a batch process at nice 10 in a scheduling group of its own, off the first core."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from labeler.store.db import make_engine
from rlhf.serve.jobs import JobRunner
from rlhf.serve.pregen_process import GeneratorProcess

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def assert_background(pid: int) -> None:
    """Batch class at nice 10, its own session and scheduling group at nice 10, and off core 0 when there are
    more."""
    assert os.getsid(pid) == pid, "not in a session of its own"
    if hasattr(os, "SCHED_BATCH"):
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH and os.getpriority(os.PRIO_PROCESS, pid) == 10
    group = Path(f"/proc/{pid}/autogroup")
    if group.exists():
        assert group.read_text() != Path("/proc/self/autogroup").read_text(), "shares the server's group"
        assert group.read_text().split()[-1] == "10"
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(cores) > 1:
        assert min(cores) not in os.sched_getaffinity(pid)


class SleepingGenerator(GeneratorProcess):
    def command(self) -> list[str]:
        return SLEEPER


class SleepingRunner(JobRunner):
    def command(self, kind: str, job_id: int, params: dict) -> list[str]:
        return SLEEPER


def test_generator_process_is_background_in_its_own_group(tmp_path):
    proc = SleepingGenerator([], tmp_path / "generator.log")._spawn()
    try:
        assert_background(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_training_job_is_background_in_its_own_group(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    runner = SleepingRunner(engine=make_engine(url), db_url=url, home=tmp_path)
    job_id = runner.start("reward", {})
    proc = runner._procs[job_id]
    try:
        assert_background(proc.pid)
    finally:
        proc.kill()
        proc.wait()
