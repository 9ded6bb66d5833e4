"""Background work progresses on a busy machine, and the server says when it does not: the real app
(`rankloop serve`, generator process on) beside two CPU-bound processes of another session at normal priority
still writes sets; a background process that waits for the CPU and gets none is reported starved."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlmodel import Session, col, func, select

from labeler.store.db import make_engine
from labeler.store.tables import CompletionSet
from rlhf.serve.monitor import BackgroundMonitor, Source
from tests.ui.conftest import free_port
from tests.ui.serve import seed_home, start_serve, stop

HOG = [sys.executable, "-c", "while True: pass"]


def hogs(count: int) -> list[subprocess.Popen]:
    """CPU-bound processes in a session of their own at normal priority, as another user's would be."""
    return [subprocess.Popen(HOG, start_new_session=True) for _ in range(count)]


def generated(url: str) -> int:
    with Session(make_engine(url)) as s:
        query = select(func.count(col(CompletionSet.id))).where(CompletionSet.origin == "generated")
        return s.exec(query).one()


def test_the_generator_writes_sets_beside_two_cpu_bound_processes(tmp_path):
    url, model = seed_home(tmp_path, labelers=["ann"], sets=0)
    busy = hogs(2)
    app = None
    try:
        time.sleep(1)  # the hogs hold both cores before the app starts
        app = start_serve(tmp_path, free_port(), model, "--buffer", "2")
        deadline = time.monotonic() + 240
        while generated(url) < 2 and time.monotonic() < deadline:
            time.sleep(2)
        assert generated(url) >= 2, (tmp_path / "logs" / "generator.log").read_text()[-2000:]
    finally:
        if app is not None:
            stop(app)
        for hog in busy:
            hog.kill()
            hog.wait()


def test_a_process_that_gets_no_cpu_is_reported_starved_and_a_busy_one_running():
    core = {max(os.sched_getaffinity(0))}
    starved, busy = (subprocess.Popen(HOG, start_new_session=True) for _ in range(2))
    hog = hogs(1)[0]
    try:
        for proc in (starved, busy, hog):
            os.sched_setaffinity(proc.pid, core)  # all three on one core: the hog and the busy one share it
        os.sched_setscheduler(starved.pid, os.SCHED_IDLE, os.sched_param(0))  # as background was before
        os.setpriority(os.PRIO_PROCESS, starved.pid, 19)
        group = Path(f"/proc/{starved.pid}/autogroup")
        if group.exists():  # a session of its own is a scheduling group of its own: lower the group too
            group.write_text("19")
        monitor = BackgroundMonitor(
            [lambda: [Source("idle loop", starved.pid, "sets"), Source("busy loop", busy.pid, "sets")]],
            window=3.0,
        )
        for _ in range(16):
            monitor.sample()
            time.sleep(0.5)
        shares = {s.name: s for s in monitor.shares()}
        assert shares["idle loop"].state == "starved" and "starved for" in shares["idle loop"].warning()
        assert shares["busy loop"].state == "running" and shares["busy loop"].cores > 0.3
        assert shares["busy loop"].warning() == ""
    finally:
        for proc in (starved, busy, hog):
            proc.kill()
            proc.wait()
