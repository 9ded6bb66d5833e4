"""The background table and notes (labeler/ui/background.py) and the job's time left at the measured rate."""

from __future__ import annotations

from datetime import timedelta

from labeler.store.tables import Job, utcnow
from labeler.ui.background import background_view, busy_note, job_rate
from labeler.ui.job_view import progress_text
from rlhf.serve.monitor import Share


class Shares:
    """What the dashboard reads of a monitor: its shares now."""

    def __init__(self, *shares: Share):
        self._shares = list(shares)

    def shares(self) -> list[Share]:
        return self._shares


def test_the_table_names_each_process_and_warns_of_one_starved_for_a_minute():
    generator = Share("generator", 11, "sets", 0.01, 0.95, 0.0, "starved", 75.0)
    job = Share("job 3", 12, "% of its stage", 0.62, 0.2, 4.5, "running", 0.0)
    frame, note = background_view(Shares(generator, job))
    assert frame.values.tolist() == [
        ["generator", 11, "starved", 0.01, "95%", "0.0 sets"],
        ["job 3", 12, "running", 0.62, "20%", "4.5 % of its stage"],
    ]
    assert note.startswith("⚠ **generator (pid 11)** starved for 75 s") and "job 3" not in note
    assert job_rate(Shares(generator, job), 12) == 4.5
    fresh = Share("generator", 11, "sets", 0.01, 0.95, 0.0, "starved", 20.0)  # under a minute: no warning yet
    assert background_view(Shares(fresh))[1] == ""
    assert "not watched" in background_view(None)[1]


def test_the_time_left_uses_the_rate_of_the_last_minute():
    now = utcnow()
    job = Job(id=3, kind="reward", status="running", progress=0.5, phase="reward training")
    job.phase_started_at = now - timedelta(minutes=1)  # its average pace says 1 min left
    assert "about 60 s left" in progress_text(job, now)
    assert "about 10 min left at the rate of the last minute" in progress_text(job, now, rate=5.0)


def test_an_estimate_says_when_background_work_waits_for_the_cpu():
    waiting = Share("generator", 11, "sets", 0.2, 0.81, 1.0, "running", 0.0)
    assert busy_note(Shares(waiting)).startswith(" The CPU is busy now (background work waits for a core 81%")
    calm = Share("generator", 11, "sets", 0.9, 0.05, 3.0, "running", 0.0)
    assert busy_note(Shares(calm)) == "" and busy_note(None) == ""
