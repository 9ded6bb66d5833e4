"""Training through the API (admins): launch a round or a stage with a config (checked like the admin form: every
field by its type and range, before anything starts), follow a job (status, progress, phase, metric series, log
tail), cancel it; list the policy versions with their lineage and the gate's verdict, and switch.

    POST /api/v1/jobs {"kind": "round", "config": {"dpo_beta": 0.2}}   -> {"id": 7, ...}
    GET  /api/v1/jobs/7                                              -> status, progress, metrics
    POST /api/v1/jobs/7/cancel
    GET  /api/v1/versions
    POST /api/v1/versions/3/switch                                   -> recorded as made current by the caller
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlmodel import Session

from labeler.api.auth import Caller, admin, engine_of
from labeler.records.job_rows import JobError, get_job, recent_jobs
from labeler.records.policies import gate_lines, make_current, policy_versions, switched_by
from labeler.store.db import read_session
from labeler.store.tables import Job, PolicyVersion
from labeler.ui.forms import HIDDEN
from rlhf.train.configs import JOB_KINDS, RangeError, job_config

router = APIRouter(tags=["training"])


class Launch(BaseModel):
    kind: str = Field(description=f"one of {', '.join(JOB_KINDS)}")
    config: dict[str, Any] = Field(
        default_factory=dict, description="fields to set; the rest keep their defaults"
    )


class JobView(BaseModel):
    id: int
    kind: str
    status: str
    progress: float
    phase: str
    params: dict[str, Any]
    metrics: list[dict[str, Any]]
    error: str | None
    log_tail: str
    created_at: str
    started_at: str | None
    finished_at: str | None


class VersionView(BaseModel):
    version: int
    current: bool
    parent: int | None
    adapter_path: str | None
    base_model: str
    gate: str | None
    gate_lines: list[str]
    kl: float | None
    heldout_accuracy: float | None
    made_current_by_hand: list[str]
    created_at: str


def checked_config(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every field of `kind`'s config: the given ones checked by type and range (422 naming the field), the others
    at their defaults."""
    try:
        config_cls = job_config(kind)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    hints = typing.get_type_hints(config_cls)
    settable = {f.name for f in fields(config_cls)} - HIDDEN
    unknown = sorted(set(given) - settable)
    if unknown:
        raise HTTPException(status_code=422, detail=f"config: unknown field(s) {unknown} for a {kind} job")
    values = {}
    for name, value in given.items():
        try:
            values[name] = TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise HTTPException(status_code=422, detail=f"config.{name}: {problem}; got {value!r}") from exc
    try:
        config = config_cls(**values)
    except RangeError as exc:
        raise HTTPException(
            status_code=422, detail=f"config.{exc.field} is {exc.value:g}: it must be {exc.allowed.text()}"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise HTTPException(status_code=422, detail=f"config: {exc}") from exc
    # what the form sends: every field but the hidden ones (the runner adds home and db)
    return {f.name: getattr(config, f.name) for f in fields(config_cls) if f.name in settable}


def job_view(job: Job) -> JobView:
    return JobView(
        id=job.id or 0,
        kind=job.kind,
        status=job.status,
        progress=job.progress,
        phase=job.phase,
        params=job.params,
        metrics=job.metrics,
        error=job.error,
        log_tail=job.log_tail[-4000:],
        created_at=job.created_at.isoformat(),
        started_at=job.started_at.isoformat() if job.started_at else None,
        finished_at=job.finished_at.isoformat() if job.finished_at else None,
    )


@router.post("/jobs", response_model=JobView, status_code=201, summary="Launch a round or a stage")
def launch_job(body: Launch, request: Request, who: Caller = Depends(admin)) -> JobView:
    params = checked_config(body.kind, body.config)
    runner = request.app.state.runner
    if runner is None:
        raise HTTPException(status_code=503, detail="this app was started without a job runner")
    try:
        job_id = runner.start(body.kind, params)
    except JobError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return read_job(job_id, request, who)


@router.get("/jobs", response_model=list[JobView], summary="Recent jobs, newest first")
def list_jobs(request: Request, limit: int = 20, who: Caller = Depends(admin)) -> list[JobView]:
    with read_session(engine_of(request)) as session:
        return [job_view(job) for job in recent_jobs(session=session, limit=min(max(limit, 1), 200))]


@router.get("/jobs/{job_id}", response_model=JobView, summary="A job's status, progress and metric series")
def read_job(job_id: int, request: Request, who: Caller = Depends(admin)) -> JobView:
    with read_session(engine_of(request)) as session:
        job = get_job(session=session, job_id=job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        return job_view(job)


@router.post("/jobs/{job_id}/cancel", response_model=JobView, summary="Cancel a queued or running job")
def cancel(job_id: int, request: Request, who: Caller = Depends(admin)) -> JobView:
    runner = request.app.state.runner
    if runner is None:
        raise HTTPException(status_code=503, detail="this app was started without a job runner")
    try:
        runner.cancel(job_id)
    except JobError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return read_job(job_id, request, who)


def version_view(pv: PolicyVersion, parents: dict[int | None, int]) -> VersionView:
    return VersionView(
        version=pv.version,
        current=pv.is_current,
        parent=parents.get(pv.parent_id),
        adapter_path=pv.adapter_path,
        base_model=pv.base_model,
        gate=pv.gate_decision,
        gate_lines=gate_lines(pv),
        kl=pv.kl,
        heldout_accuracy=pv.heldout_accuracy,
        made_current_by_hand=switched_by(pv),
        created_at=pv.created_at.isoformat(),
    )


@router.get("/versions", response_model=list[VersionView], summary="Policy versions: lineage, gate, current")
def versions(request: Request, who: Caller = Depends(admin)) -> list[VersionView]:
    with read_session(engine_of(request)) as session:
        rows = policy_versions(session=session)
        parents: dict[int | None, int] = {pv.id: pv.version for pv in rows}
        return [version_view(pv, parents) for pv in rows]


@router.post("/versions/{version}/switch", response_model=VersionView, summary="Make a version current")
def switch(version: int, request: Request, who: Caller = Depends(admin)) -> VersionView:
    try:
        with Session(engine_of(request)) as session:
            make_current(session=session, version=version, by=who.name)
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return next(v for v in versions(request, who) if v.version == version)
