"""What the training tab shows of one job, as plain values (tested without a browser): one small plot per kind of
metric with a numeric axis, a progress line with the stage's name and the time left, the held-out evaluation
with the split it comes from, and the log's last lines (tqdm's carriage returns folded).

    panels = metric_panels(job)          # [(title, DataFrame(step, value, series))], always PANEL_SLOTS long
    progress_html(job, now=utcnow())     # "ppo · step 6 of 12 · 50% · about 3 min left"
"""

from __future__ import annotations

import html
import re
from datetime import datetime

import pandas as pd

from labeler.store.tables import Job, utcnow

# (title, which metric names go in it); a name goes in the first panel whose test it passes
PANELS: list[tuple[str, re.Pattern[str]]] = [
    ("Loss", re.compile(r"loss")),
    ("Accuracy", re.compile(r"accurac")),
    ("Reward (proxy and gold)", re.compile(r"^(reward|gold|objective)$")),
    ("KL to the reference", re.compile(r"kl")),
    ("Response length (tokens)", re.compile(r"length")),
    ("Other", re.compile(r".")),
]
PANEL_SLOTS = len(PANELS)
SKIPPED = {"step", "t", "phase", "split", "updates", "early_stopped"}
COLUMNS = ["step", "value", "series"]


def _points(job: Job | None) -> list[dict]:
    return [p for p in (job.metrics if job else []) if isinstance(p.get("step"), int | float)]


def metric_panels(job: Job | None) -> list[tuple[str, pd.DataFrame]]:
    """One (title, frame) per panel, in PANELS order: the training metrics logged per step, floats only (a
    numeric y axis even while a panel is empty), one series per metric, named with its stage where the job
    ran several (a round: "reward training: loss", "ppo: policy_loss")."""
    points = _points(job)
    stages = {p.get("phase", "") for p in points}
    rows: list[list[tuple[float, float, str]]] = [[] for _ in PANELS]
    for point in points:
        prefix = f"{point.get('phase')}: " if len(stages) > 1 and point.get("phase") else ""
        for name, value in point.items():
            if name in SKIPPED or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            slot = next(i for i, (_, test) in enumerate(PANELS) if test.search(name))
            rows[slot].append((float(point["step"]), float(value), prefix + name))
    frames = []
    for (title, _), panel in zip(PANELS, rows, strict=True):
        frame = pd.DataFrame(panel, columns=COLUMNS).astype({"step": "float64", "value": "float64"})
        frames.append((f"{title}, training batches", frame))
    return frames


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


def progress_text(job: Job | None, now: datetime | None = None, rate: float | None = None) -> str:
    """The job's state in one line: status, stage, share done, and the time left at `rate` (percent of the stage
    a minute, measured over the last minute: rlhf/serve/monitor.py), else at the stage's pace so far."""
    if job is None:
        return "No job yet."
    now = now or utcnow()
    stage = job.phase or job.kind
    head = f"Job {job.id} ({job.kind}) · {job.status}"
    if job.status in ("succeeded", "failed", "cancelled"):
        took = ""
        if job.started_at and job.finished_at:
            took = f" in {_minutes((job.finished_at - job.started_at).total_seconds())}"
        return head + took
    if job.status == "queued":
        return head + " · waiting to start"
    text = f"{head} · {stage} · {job.progress:.0%}"
    started = job.phase_started_at or job.started_at
    if rate and 0.02 <= job.progress < 1:
        text += (
            f" · about {_minutes(60 * 100 * (1 - job.progress) / rate)} left at the rate of the last minute"
        )
    elif started and 0.02 <= job.progress < 1:
        elapsed = (now - started).total_seconds()
        text += f" · about {_minutes(elapsed * (1 - job.progress) / job.progress)} left"
    elif job.progress >= 1:
        text += " · finishing (evaluating and saving)"
    return text


def progress_html(job: Job | None, now: datetime | None = None, rate: float | None = None) -> str:
    """A progress bar for the running stage with `progress_text` under it."""
    share = 0.0 if job is None else (1.0 if job.status == "succeeded" else job.progress)
    state = "none" if job is None else job.status
    return (
        f'<div class="rl-job" data-status="{state}"><progress max="100" value="{round(100 * share)}"></progress>'
        f"<div>{html.escape(progress_text(job, now, rate))}</div></div>"
    )


def evaluation_note(job: Job | None) -> str:
    """The evaluation a job ends with, saying which split it was measured on (a reward or SFT stage's from its
    logged figures, DPO's implicit-reward accuracy from its result), and a round's gate verdict line by line."""
    result = (job.params or {}).get("result") if job else None
    result = result if isinstance(result, dict) else {}
    note = step_evaluation(job) or policy_evaluation(result.get("metrics") or {})
    gate = result.get("gate") or {}
    if gate.get("lines"):
        verdict = "\n".join(f"- {html.escape(str(line).strip())}" for line in gate["lines"])
        note += f"\n\n**Gate: {html.escape(str(gate.get('decision', '?')))}**\n{verdict}"
    return note.strip()


def policy_evaluation(final: dict) -> str:
    """DPO's implicit-reward accuracy on held-out sets, as its result recorded it."""
    if "heldout_accuracy" not in final:
        return ""
    held, accuracy = int(final.get("heldout_sets") or 0), final["heldout_accuracy"]
    if not held or not isinstance(accuracy, int | float) or accuracy != accuracy:  # NaN: nothing held out
        return "**Evaluation:** none (no held-out sets ranked yet)"
    return (
        f"**Evaluation (held-out, {held} sets, {int(final.get('heldout_pairs') or 0)} pairs):** "
        f"implicit-reward accuracy {accuracy:.3f}"
    )


def step_evaluation(job: Job | None) -> str:
    """The evaluation a reward or SFT stage logged last."""
    for point in reversed(job.metrics if job else []):
        if "heldout_nll_after" in point:
            held = int(point.get("heldout_answers", 0))
            if not held:
                return "**Evaluation:** none (no held-out answers: their prompts all went to training)"
            return (
                f"**Evaluation (held-out, {held} best answers):** NLL per token {point['heldout_nll_before']:.3f} "
                f"before, {point['heldout_nll_after']:.3f} after"
            )
        if "heldout_sets" in point and "accuracy" in point:
            held = int(point["heldout_sets"])
            where = f"held-out, {held} sets" if held else "training sets: no held-out sets"
            return (
                f"**Evaluation ({where}):** accuracy {point['accuracy']:.3f}, loss {point.get('loss', 0):.3f}"
            )
    return ""


def clean_log(text: str, lines: int = 60) -> str:
    """The last `lines` lines of a log, each progress bar's redraws (carriage returns) folded to the last one."""
    folded = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    kept = [line for line in folded if line.strip()]
    return "\n".join(kept[-lines:])


def log_html(text: str) -> str:
    """The log tail in a box that starts scrolled to its newest line (column-reverse keeps the bottom in view)."""
    return f'<div class="rl-log"><pre>{html.escape(clean_log(text))}</pre></div>'


CSS = """
.rl-job progress { width: 100%; height: 14px; }
.rl-log { display: flex; flex-direction: column-reverse; max-height: 16em; overflow: auto;
  border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 4px 8px; }
.rl-log pre { margin: 0; white-space: pre-wrap; font-size: 0.85em; }
"""
