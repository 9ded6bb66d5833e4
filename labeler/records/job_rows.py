"""Job rows: every change of a background job's status goes through these functions, with the `JobStatus`
literals, so the runner (rlhf/serve/jobs.py), the stage that does the work (rlhf/train/stage.py, rlhf/train/progress.py) and the
admin tab agree on what each status means.

    queued -> running -> succeeded | failed | cancelled      (cancelled can also come straight from queued)

    with Session(engine) as session:
        job_id = open_job(session=session, kind="reward", params={"epochs": 2}, host="node-1")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

from sqlmodel import Session, col, select

from labeler.records.webhooks import queue_event
from labeler.store.tables import Job, JobStatus, id_of, utcnow

ACTIVE: tuple[JobStatus, ...] = ("queued", "running")
Ending = Literal["succeeded", "failed", "cancelled"]
DISAPPEARED = -1  # the exit code recorded for a process that vanished without one (a restarted server's job)


class JobError(RuntimeError):
    """A job cannot be started or changed (one of its kind is running, no such job, it has already ended)."""


@dataclass(frozen=True)
class ActiveJob:
    id: int
    pid: int | None
    host: str | None


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobError(f"no job {job_id}")
    return job


def open_job(*, session: Session, kind: str, params: dict, host: str) -> int:
    """Queue a job of `kind`; refuses while another of that kind is queued or running."""
    busy = session.exec(select(Job).where(Job.kind == kind, col(Job.status).in_(ACTIVE))).first()
    if busy is not None:
        raise JobError(f"a {kind} job is already {busy.status} (job {busy.id}); wait for it or cancel it")
    job = Job(kind=kind, params=params, status="queued", host=host)
    session.add(job)
    session.commit()
    return id_of(job)


def announce_ending(session: Session, job: Job) -> None:
    """Queue the webhooks' event for a job that has just ended (in the transaction that ends it)."""
    payload = {"job_id": id_of(job), "kind": job.kind, "status": job.status, "error": job.error}
    if job.status == "succeeded" and isinstance(job.params.get("result"), dict):
        payload["result"] = job.params["result"]
    queue_event(session=session, event=f"job.{job.status}", payload=payload)


def set_job_pid(*, session: Session, job_id: int, pid: int) -> None:
    job = _job(session, job_id)
    job.pid = pid
    session.add(job)
    session.commit()


def cancel_job(*, session: Session, job_id: int) -> int | None:
    """Mark an active job cancelled; returns the pid to stop (None when it never started a process)."""
    job = _job(session, job_id)
    if job.status not in ACTIVE:
        raise JobError(f"job {job_id} is already {job.status}")
    job.status, job.finished_at, job.error = "cancelled", utcnow(), "cancelled by an admin"
    session.add(job)
    announce_ending(session, job)
    session.commit()
    return job.pid


def active_jobs(*, session: Session, also: Sequence[int] = ()) -> list[ActiveJob]:
    """Queued and running jobs, and the jobs `also` names whatever their status (a runner's own processes,
    whose rows may say they ended before the runner has read the end of their logs)."""
    wanted = col(Job.status).in_(ACTIVE) | col(Job.id).in_(list(also))
    rows = session.exec(select(Job).where(wanted)).all()
    return [ActiveJob(id_of(job), job.pid, job.host) for job in rows]


def record_check(*, session: Session, job_id: int, log_tail: str, exit_code: int | None) -> None:
    """What the runner saw of a job's process: its log tail and, once it ended, its exit code. A process that
    ended while its row is still active never recorded an ending: it died, and the job is marked failed.
    Not committed: the runner records all its jobs in one transaction."""
    job = session.get(Job, job_id)
    if job is None:
        return
    job.log_tail = log_tail
    if exit_code is not None and job.status in ACTIVE:
        job.status, job.finished_at = "failed", utcnow()
        job.error = (
            "process disappeared"
            if exit_code == DISAPPEARED
            else f"process exited with code {exit_code} before finishing"
        )
        announce_ending(session, job)
    session.add(job)


def job_status(*, session: Session, job_id: int) -> JobStatus:
    status = _job(session, job_id).status
    if status not in get_args(JobStatus):
        raise JobError(f"job {job_id} has an unknown status {status!r}")
    return cast(JobStatus, status)


def mark_running(*, session: Session, job_id: int, pid: int) -> None:
    """The stage's process took the job up."""
    job = _job(session, job_id)
    job.status, job.started_at, job.pid = "running", utcnow(), pid
    session.add(job)
    session.commit()


def finish_job(
    *, session: Session, job_id: int, status: Ending, error: str | None = None, result: dict | None = None
) -> None:
    """Record how the job ended. A job an admin cancelled stays cancelled whatever the process reports."""
    job = session.get(Job, job_id)
    if job is None:
        return
    already_ended = job.status not in ACTIVE  # an admin cancelled it: announced then
    if job.status != "cancelled":
        job.status = status
    job.error = error
    job.finished_at = utcnow()
    if result:
        job.params = {**job.params, "result": result}
    if status == "succeeded":
        job.progress = 1.0
    session.add(job)
    if not already_ended:
        announce_ending(session, job)
    session.commit()


def report_progress(
    *, session: Session, job_id: int, progress: float, metrics: list[dict], phase: str | None = None
) -> bool:
    """Add progress, metric points and a phase line to the job; False (and nothing written) once the job has
    been cancelled, so the stage can stop."""
    job = session.get(Job, job_id)
    if job is None:
        return True
    if job.status == "cancelled":
        return False
    job.progress = min(1.0, progress)
    if metrics:
        job.metrics = [*job.metrics, *metrics]
    if phase:
        job.phase, job.phase_started_at = phase[:64], utcnow()
        job.log_tail = (job.log_tail + phase + "\n")[-4000:]
    session.add(job)
    session.commit()
    return True


def get_job(*, session: Session, job_id: int | None = None) -> Job | None:
    """The job with this id; the newest job when `job_id` is None."""
    if job_id is not None:
        return session.get(Job, job_id)
    return session.exec(select(Job).order_by(col(Job.id).desc())).first()


def recent_jobs(*, session: Session, limit: int = 50) -> list[Job]:
    return list(session.exec(select(Job).order_by(col(Job.id).desc()).limit(limit)).all())
