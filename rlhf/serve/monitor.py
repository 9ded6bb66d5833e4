"""How much CPU the background processes (the generator, training jobs) get, and whether they are starved: the
server samples each one's scheduler counters every few seconds (Linux `/proc/PID/task/*/schedstat`: time on a
core, time waiting for one) and the rate of its work, so the dashboard and the training tab can say "running,
0.4 cores, 3.1 sets/min" or warn that a process has waited for the CPU for a minute and got almost none.

    monitor = BackgroundMonitor(engine=engine, sources=[generator_source, runner.job_sources])
    monitor.start()                        # a daemon thread; monitor.rows() for the tables
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60.0  # shares and rates are measured over the last minute
STARVED_CPU = 0.05  # under this many cores ...
STARVED_WAIT = 0.5  # ... while waiting for a core at least this share of the time: starved
SAMPLE_SECONDS = 5.0
State = Literal["running", "idle", "starved", "warming up", "gone"]


@dataclass(frozen=True)
class CpuSample:
    at: float  # time.monotonic()
    cpu: float  # seconds on a core, all threads
    wait: float  # seconds runnable but waiting for a core, all threads
    work: float  # the process's own count of work done (sets written, job progress)


def read_cpu(pid: int) -> tuple[float, float] | None:
    """(seconds on a core, seconds waiting for one) over all of `pid`'s threads; None where unreadable."""
    tasks = Path(f"/proc/{pid}/task")
    cpu = wait = 0.0
    try:
        for task in tasks.iterdir():
            fields = (task / "schedstat").read_text().split()
            cpu, wait = cpu + int(fields[0]) / 1e9, wait + int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None if not tasks.exists() else (cpu, wait)
    return cpu, wait


@dataclass(frozen=True)
class Share:
    """One background process over the last window: cores it used, share of the time it waited for a core,
    its work rate per minute, and its state."""

    name: str
    pid: int
    unit: str  # what `rate` counts per minute: "sets", "% of the stage"
    cores: float | None
    waiting: float | None
    rate: float | None
    state: State
    starved_seconds: float  # how long it has been starved without a break
    window: float = WINDOW_SECONDS

    def warning(self) -> str:
        """A line for the dashboard once the process has been starved for a whole window; blank otherwise."""
        if self.state == "starved" and self.starved_seconds >= self.window:
            return (
                f"starved for {self.starved_seconds:.0f} s: other processes hold the CPU (it got "
                f"{(self.cores or 0):.2f} cores while waiting {(self.waiting or 0):.0%} of the time)"
            )
        return ""


@dataclass(frozen=True)
class Source:
    """A process to watch: its name, pid, what its work counts, and a reader of that count (None: not read)."""

    name: str
    pid: int
    unit: str
    work: Callable[[], float] | None = None


class ProcessMeter:
    """The samples of one process over the last `window` seconds; `share()` reads them."""

    def __init__(self, source: Source, window: float = WINDOW_SECONDS):
        self.source, self.window = source, window
        self.samples: deque[CpuSample] = deque()
        self.starved_since: float | None = None
        self.gone = False  # its /proc entry vanished at the last sample

    def sample(self, now: float) -> None:
        cpu = read_cpu(self.source.pid)
        self.gone = cpu is None
        if cpu is None:
            return
        try:
            work = self.source.work() if self.source.work else 0.0
        except Exception:  # a store read failing must not stop the sampling
            logger.exception("could not read the work of %s", self.source.name)
            work = self.samples[-1].work if self.samples else 0.0
        self.samples.append(CpuSample(now, *cpu, work))
        while len(self.samples) > 2 and now - self.samples[1].at >= self.window:
            self.samples.popleft()
        self._track_starving(now)

    def _track_starving(self, now: float) -> None:
        share = self.share(now)
        if share.state == "starved":
            self.starved_since = self.starved_since or (self.samples[0].at if self.samples else now)
        else:
            self.starved_since = None

    def share(self, now: float | None = None) -> Share:
        now = time.monotonic() if now is None else now
        source, samples = self.source, self.samples
        if not samples or self.gone:  # read from the last sample: the UI's reads touch no /proc file
            return Share(source.name, source.pid, source.unit, None, None, None, "gone", 0.0)
        first, last = samples[0], samples[-1]
        span = last.at - first.at
        if span < min(SAMPLE_SECONDS, self.window / 2):
            return Share(source.name, source.pid, source.unit, None, None, None, "warming up", 0.0)
        cores, waiting = (last.cpu - first.cpu) / span, (last.wait - first.wait) / span
        rate = (last.work - first.work) / span * 60 if source.work else None
        rate = None if rate is not None and rate < 0 else rate  # a job moved on to its next stage
        state: State = "running" if cores >= STARVED_CPU else "idle"
        if cores < STARVED_CPU and waiting >= STARVED_WAIT:
            state = "starved"
        starved = now - self.starved_since if self.starved_since is not None and state == "starved" else 0.0
        return Share(source.name, source.pid, source.unit, cores, waiting, rate, state, starved, self.window)


class BackgroundMonitor:
    """Samples every process the `sources` callables name (each returns the processes to watch now) every
    SAMPLE_SECONDS in a daemon thread; `shares()` gives one `Share` per process watched now."""

    def __init__(
        self,
        sources: Iterable[Callable[[], list[Source]]],
        period: float = SAMPLE_SECONDS,
        window: float = WINDOW_SECONDS,
    ):
        self.sources, self.period, self.window = list(sources), period, window
        self._meters: dict[tuple[str, int], ProcessMeter] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def sample(self) -> None:
        watched = [s for source in self.sources for s in source()]  # reads the store: outside the lock
        now = time.monotonic()
        keys = {(s.name, s.pid) for s in watched}
        with self._lock:
            for key in [k for k in self._meters if k not in keys]:
                del self._meters[key]
            meters = [self._meters.setdefault((s.name, s.pid), ProcessMeter(s, self.window)) for s in watched]
        for meter in meters:
            meter.sample(now)

    def shares(self) -> list[Share]:
        with self._lock:
            meters = list(self._meters.values())
        return [m.share() for m in meters]

    def run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sample()
            except Exception:
                logger.exception("background monitor sample failed")

    def start(self) -> None:
        self._stop.clear()
        threading.Thread(target=self.run, name="background-monitor", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def supported() -> bool:
    """Whether this system exposes per-thread scheduler counters (Linux with schedstat)."""
    return Path(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat").exists()
