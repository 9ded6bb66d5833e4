"""The background processes' table (the generator, training jobs): state, CPU share, time waiting for a core,
rate of work, and a warning for one starved for a minute; shown on the dashboard and the training tab.

    frame, warning = background_view(deps.monitor)
    estimate_text + busy_note(deps.monitor)      # "... The CPU is busy now (background work waits ...) ..."
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from rlhf.serve.monitor import BackgroundMonitor, Share

BUSY_WAITING = 0.5  # a background process waiting for a core this share of the time: the machine is busy
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


def busy_note(monitor: BackgroundMonitor | None) -> str:
    """A sentence for a duration estimate when background processes now wait for the CPU most of the time (the
    estimate's rates were measured with CPU to spare): a job would get only its share; blank otherwise."""
    shares = monitor.shares() if monitor is not None else []
    waiting = [s.waiting for s in shares if s.waiting is not None]
    if not waiting or max(waiting) < BUSY_WAITING:
        return ""
    return (
        f" The CPU is busy now (background work waits for a core {max(waiting):.0%} of the time): a job gets "
        "only its share of it, so it may take longer; the background table shows the share it gets."
    )


def job_rate(monitor: BackgroundMonitor | None, pid: int | None) -> float | None:
    """The watched job's progress rate now, in percent of its stage per minute (None: not measured yet)."""
    if monitor is None or pid is None:
        return None
    return next((s.rate for s in monitor.shares() if s.pid == pid and s.rate), None)
