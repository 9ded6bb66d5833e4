"""Data through the API (admins): import prompts and pairs (the command line's parsers and checks; the body is the
file: JSONL, CSV or plain text, up to the upload limit), list sets and rankings with filters and cursor pagination,
and stream a preference export (TRL's prompt/chosen/rejected, JSONL or Parquet).

    POST /api/v1/import/prompts?source=survey&format=jsonl   (body: the file)  -> {"new": 12}
    POST /api/v1/import/pairs?source=hh&format=jsonl                           -> {"added": 40, "skipped": 0}
    GET  /api/v1/sets?after=0&limit=100&waiting=true                           -> {"items": [...], "next": 100}
    GET  /api/v1/rankings?after=0&labeler=ana&set_id=7
    GET  /api/v1/export?format=jsonl                                           -> the pairs file

An import's errors name the body as the file `SOURCE.FORMAT`, with the line and the field, and store nothing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlmodel import Session
from starlette.background import BackgroundTask

from labeler.api.auth import Caller, admin, engine_of
from labeler.io.export import export_preferences
from labeler.io.formats import ImportFormatError
from labeler.io.importers import PromptImport, import_pairs, import_prompts
from labeler.store.db import read_session
from labeler.store.pages import rankings_page, sets_page

router = APIRouter(tags=["data"])
SOURCE = re.compile(r"^[\w.-]{1,64}$")
MAX_PAGE = 500


class Imported(BaseModel):
    source: str
    new: int = 0
    added: int = 0
    skipped: int = 0


class Page(BaseModel):
    items: list[dict[str, Any]]
    next: int | None  # pass as `after` for the next page; null: this was the last


async def _body_file(request: Request, folder: Path, source: str, fmt: str) -> Path:
    """The request body written to `folder/source.fmt`, streamed (the session guard bounds its size)."""
    if not SOURCE.match(source):
        raise HTTPException(status_code=422, detail="source: letters, digits, '.', '-' and '_', at most 64")
    path = folder / f"{source}.{fmt}"
    async with await anyio.open_file(path, "wb") as out:  # written off the event loop
        async for chunk in request.stream():
            await out.write(chunk)
    if path.stat().st_size == 0:
        raise HTTPException(
            status_code=422, detail=f"{path.name}: the body is empty; send the file as the body"
        )
    return path


@router.post("/import/prompts", response_model=Imported, summary="Import prompts (the body is the file)")
async def post_prompts(
    request: Request,
    source: str = "api",
    format: Literal["jsonl", "csv", "txt"] = "jsonl",
    eval_fraction: float = Query(0.0, ge=0.0, le=0.9),
    who: Caller = Depends(admin),
) -> Imported:
    with tempfile.TemporaryDirectory(prefix="rankloop-import-") as folder:
        path = await _body_file(request, Path(folder), source, format)
        done = await _in_thread(request, _prompts, path, eval_fraction)
    return Imported(source=source, new=done.added, skipped=done.already_present)


@router.post(
    "/import/pairs", response_model=Imported, summary="Import preference pairs (the body is the file)"
)
async def post_pairs(
    request: Request,
    source: str = "api",
    format: Literal["jsonl", "csv"] = "jsonl",
    who: Caller = Depends(admin),
) -> Imported:
    with tempfile.TemporaryDirectory(prefix="rankloop-import-") as folder:
        path = await _body_file(request, Path(folder), source, format)
        added, skipped = await _in_thread(request, _pairs, path)
    return Imported(source=source, added=added, skipped=skipped)


async def _in_thread(request: Request, work: Any, *args: Any) -> Any:
    try:
        return await anyio.to_thread.run_sync(work, engine_of(request), *args)
    except ImportFormatError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


def _prompts(engine: Any, path: Path, eval_fraction: float) -> PromptImport:
    with Session(engine) as session:
        return import_prompts(session=session, path=path, eval_fraction=eval_fraction)


def _pairs(engine: Any, path: Path) -> tuple[int, int]:
    with Session(engine) as session:
        done = import_pairs(session=session, path=path)
        return done.added, done.already_present


@router.get("/sets", response_model=Page, summary="Completion sets, oldest first, by cursor")
def list_sets(
    request: Request,
    after: int = Query(0, ge=0, description="the `next` of the previous page"),
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    origin: str | None = None,
    waiting: bool | None = Query(None, description="true: still needs labels; false: has all it needs"),
    policy_version_id: int | None = None,
    who: Caller = Depends(admin),
) -> Page:
    with read_session(engine_of(request)) as session:
        items = sets_page(
            session=session,
            after=after,
            limit=limit,
            origin=origin,
            waiting=waiting,
            policy_version_id=policy_version_id,
        )
    return Page(items=items, next=items[-1]["id"] if len(items) == limit else None)


@router.get("/rankings", response_model=Page, summary="Rankings, oldest first, by cursor")
def list_rankings(
    request: Request,
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    labeler: str | None = None,
    set_id: int | None = None,
    since: datetime | None = Query(None, description="ISO time: rankings made at or after it"),
    skipped: bool | None = None,
    who: Caller = Depends(admin),
) -> Page:
    with read_session(engine_of(request)) as session:
        items = rankings_page(
            session=session,
            after=after,
            limit=limit,
            labeler=labeler,
            set_id=set_id,
            since=since,
            skipped=skipped,
        )
    return Page(items=items, next=items[-1]["id"] if len(items) == limit else None)


@router.get("/export", summary="The preference pairs as a file (TRL's prompt/chosen/rejected)")
def export(
    request: Request,
    format: Literal["jsonl", "parquet"] = "jsonl",
    weights: Literal["equal", "reliability"] = "equal",
    who: Caller = Depends(admin),
) -> FileResponse:
    folder = Path(tempfile.mkdtemp(prefix="rankloop-export-"))
    try:
        with Session(engine_of(request)) as session:
            result = export_preferences(session=session, out=folder, fmt=format, weights=weights)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        result.paths[0],  # the pairs (then the SFT file, the card and the settings)
        filename=f"rankloop-pairs.{format}",
        media_type="application/x-ndjson" if format == "jsonl" else "application/vnd.apache.parquet",
        headers={"Rankloop-Pairs": str(result.pairs)},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
