"""The background processes' table (the generator, training jobs): state, CPU share, time waiting for a core,
rate of work, and a warning for one starved for a minute; shown on the dashboard and the training tab.

    frame, warning = background_view(deps.monitor)
    estimate_text + busy_note()                  # "... The CPU is busy now (load 3.6 on 2 cores) ..."
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from rlhf.monitor import BackgroundMonitor, Share

COLUMNS = ["process", "pid", "state", "cores (last min)", "waiting for a core", "rate (per min)"]


def _row(share: Share) -> list:
    rate = "" if share.rate is None else f"{share.rate:.1f} {share.unit}"
    return [
        share.name,
        share.pid,
        share.state,
        "" if share.cores is None else round(share.cores, 2),
        "" if share.waiting is None else f"{share.waiting:.0%}",
        rate,
    ]


def background_view(monitor: BackgroundMonitor | None) -> tuple[pd.DataFrame, str]:
    """The table, and a warning line per starved process (blank when none); a note where nothing is watched."""
    if monitor is None:
        return pd.DataFrame([], columns=COLUMNS), "Background processes are not watched in this server."
    shares = monitor.shares()
    warnings = [f"**{s.name} (pid {s.pid})** {s.warning()}" for s in shares if s.warning()]
    note = "\n\n".join(f"⚠ {w}" for w in warnings)
    if not shares:
        note = "No background process running (the generator is off or in a thread; no job running)."
    return pd.DataFrame([_row(s) for s in shares], columns=COLUMNS), note


def busy_note(load: float | None = None, cores: int | None = None) -> str:
    """A sentence for a duration estimate when the machine is busier than its cores (the estimate's rates were
    measured with the CPU to spare): background work then gets only its share; blank otherwise."""
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else load
    cores = cores or os.cpu_count() or 1
    if load is None or load <= cores:
        return ""
    return (
        f" The CPU is busy now (load {load:.1f} on {cores} cores): a job gets only its share of it, so it may "
        "take longer; the training tab's background table shows the share it gets."
    )


def job_rate(monitor: BackgroundMonitor | None, pid: int | None) -> float | None:
    """The watched job's progress rate now, in percent of its stage per minute (None: not measured yet)."""
    if monitor is None or pid is None:
        return None
    return next((s.rate for s in monitor.shares() if s.pid == pid and s.rate), None)
