"""Progress and metrics from a training stage: to the console (tqdm) and, when run as a job, to the job row
that the admin tab reads (progress, metric series, log tail, cancellation)."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session
from tqdm.auto import tqdm

from labeler.records.job_rows import report_progress

logger = logging.getLogger(__name__)


class Cancelled(RuntimeError):
    """The job was cancelled from the admin tab."""


class Reporter(Protocol):
    def start(self, total: int, desc: str) -> None: ...
    def step(self, metrics: dict | None = None) -> None: ...
    def log(self, metrics: dict) -> None: ...
    def close(self) -> None: ...


class ConsoleReporter:
    """A tqdm bar; metrics printed as they come."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def start(self, total: int, desc: str) -> None:
        self.close()
        self.bar = tqdm(total=total, desc=desc)

    def step(self, metrics: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if metrics:
                self.bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float)}, refresh=False
                )

    def log(self, metrics: dict) -> None:
        tqdm.write(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JobReporter(ConsoleReporter):
    """Also writes progress and metric points into the job row; raises Cancelled once the row says so."""

    def __init__(self, engine: Engine, job_id: int, min_interval_s: float = 1.0):
        super().__init__()
        self.engine, self.job_id, self.min_interval_s = engine, job_id, min_interval_s
        self.total, self.done, self._last = 1, 0, 0.0
        self._pending: list[dict] = []
        self.phase = ""

    def start(self, total: int, desc: str) -> None:
        super().start(total, desc)
        self.total, self.done, self.phase = max(total, 1), 0, desc
        self._flush(force=True, phase=desc)

    def step(self, metrics: dict | None = None) -> None:
        super().step(metrics)
        self.done += 1
        self._flush()

    def log(self, metrics: dict) -> None:
        super().log(metrics)
        self._pending.append({**metrics, "t": round(time.time(), 2), "phase": self.phase})
        self._flush()

    def close(self) -> None:
        self._flush(force=True)
        super().close()

    def _flush(self, force: bool = False, phase: str | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        with Session(self.engine) as session:
            going_on = report_progress(
                session=session,
                job_id=self.job_id,
                progress=self.done / self.total,
                metrics=self._pending,
                phase=phase,
            )
        if not going_on:
            raise Cancelled(f"job {self.job_id} was cancelled")
        self._pending = []
