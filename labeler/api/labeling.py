"""Labelling through the API: lease the next set, submit a ranking, skip, undo. The same store calls as the
labeling page (labeler/ui/labeling.py), so the same rules, idempotence and messages: a set is named only by its
lease token, answers by their display position, and a repeated submit is stored once.

    POST /api/v1/lease                     -> {"set": {"token", "messages", "answers": [...], ...}} or {"set": null}
    POST /api/v1/submit {"token", "ranks": [1, 2, 2, null], "flags": [null, null, null, "harmful"], ...}
    POST /api/v1/skip {"token"}
    POST /api/v1/undo                      -> the set back with the choices it had

Texts are returned as they are stored (plain text, Markdown as the model wrote it): a client that shows them in a
page renders them inert itself, as the app does (labeler/ui/render.py).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from labeler.api.auth import Caller, engine_of, labeler
from labeler.labels.conversations import conversations
from labeler.store.db import read_session
from labeler.store.errors import LeaseGone, RankingRejected
from labeler.store.leasing import LeasedSet, lease_next_set
from labeler.store.settings import current_guidelines
from labeler.store.store import PageChoices
from labeler.store.suggestions import shown_suggestion
from labeler.store.tables import FLAG_REASONS
from labeler.store.undo import undo_last
from labeler.ui.labeling import asks_next_message, submit_form
from labeler.ui.ranker import read_page

router = APIRouter(tags=["labelling"])


class Answer(BaseModel):
    position: int = Field(description="1-based place on the page; choices refer to answers by it")
    text: str
    cut_off: bool = Field(description="the model hit its token limit")


class LeasedView(BaseModel):
    token: str = Field(description="names this lease; send it back with the choices")
    messages: list[dict] = Field(description="the conversation so far, ending with the user's message")
    answers: list[Answer]
    asks_next_message: bool = Field(description="a `follow_up` may continue the conversation")
    suggested_ranks: list[int | None] | None = Field(default=None, description="a judge's suggestion")
    suggested_by: str | None = None
    guidelines_version: int | None = None


class Lease(BaseModel):
    set: LeasedView | None = Field(description="null: nothing waits for this labeler now")


class Choices(BaseModel):
    """What the page sends, by display position (null: not ranked / not flagged / not edited)."""

    token: str = Field(max_length=64)
    ranks: list[int | None] = Field(default_factory=list, description="1 = best; equal ranks are ties")
    flags: list[str | None] = Field(default_factory=list, description=f"a reason: {', '.join(FLAG_REASONS)}")
    none_acceptable: bool = False
    comment: str = ""
    follow_up: str = Field(default="", description="the next user message, where the set asks for one")
    edits: list[str | None] = Field(default_factory=list, description="a rewrite of each answer, or null")
    edit_seconds: list[float | None] = Field(default_factory=list)
    written: str | None = Field(default=None, description="an answer written from scratch")
    written_seconds: float | None = None


class Skip(BaseModel):
    token: str = Field(max_length=64)


class Saved(BaseModel):
    status: Literal["saved", "skipped"]
    message: str


class Back(BaseModel):
    set: LeasedView
    ranks: list[int | None]
    flags: list[str | None]
    none_acceptable: bool
    comment: str
    skipped: bool
    edits: list[str | None]
    written: str | None
    follow_up: str


def view_of(leased: LeasedSet, continues: bool) -> LeasedView:
    assert leased.assignment.token is not None
    suggested, suggested_by = shown_suggestion(leased.assignment, leased.completions)
    return LeasedView(
        token=leased.assignment.token,
        messages=[{"role": m.get("role"), "content": m.get("content")} for m in leased.prompt.messages],
        answers=[
            Answer(position=i + 1, text=c.text, cut_off=c.finish_reason == "length")
            for i, c in enumerate(leased.completions)
        ],
        asks_next_message=continues,
        suggested_ranks=suggested,
        suggested_by=suggested_by,
        guidelines_version=leased.assignment.guidelines_version,
    )


def rejected(exc: RankingRejected) -> HTTPException:
    """409 when the token's set is not (or no longer) the caller's, 422 for choices the rules refuse."""
    return HTTPException(status_code=409 if isinstance(exc, LeaseGone) else 422, detail=str(exc))


@router.post("/lease", response_model=Lease, summary="Lease the next set to rank")
def lease(request: Request, who: Caller = Depends(labeler)) -> Lease:
    engine = engine_of(request)
    with read_session(engine) as session:
        version = current_guidelines(session=session).version
        talk = conversations(session=session)
    with Session(engine, expire_on_commit=False) as session:
        leased = lease_next_set(
            session=session,
            user_id=who.user_id,
            guidelines_version=version,
            later_turns_first=talk.later_turns_first,
        )
        if leased is None:
            return Lease(set=None)
        return Lease(set=view_of(leased, asks_next_message(talk, leased.prompt)))


@router.post("/submit", response_model=Saved, summary="Submit a ranking for a leased set")
def submit(body: Choices, request: Request, who: Caller = Depends(labeler)) -> Saved:
    try:
        choices = read_page(body.model_dump(), body.none_acceptable, body.comment)
        choices.follow_up = body.follow_up
        submit_form(engine_of(request), who.user_id, body.token, choices)
    except RankingRejected as exc:
        raise rejected(exc) from exc
    return Saved(status="saved", message="Saved.")


@router.post("/skip", response_model=Saved, summary="Skip a leased set")
def skip(body: Skip, request: Request, who: Caller = Depends(labeler)) -> Saved:
    try:
        submit_form(engine_of(request), who.user_id, body.token, PageChoices([], [], skipped=True))
    except RankingRejected as exc:
        raise rejected(exc) from exc
    return Saved(status="skipped", message="Skipped.")


@router.post("/undo", response_model=Back, summary="Take back your last submission (for two minutes)")
def undo(request: Request, who: Caller = Depends(labeler)) -> Back:
    engine = engine_of(request)
    with read_session(engine) as session:
        talk = conversations(session=session)
    try:
        with Session(engine, expire_on_commit=False) as session:
            back = undo_last(session=session, user_id=who.user_id)
    except RankingRejected as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return Back(
        set=view_of(back.leased, asks_next_message(talk, back.leased.prompt)),
        ranks=back.ranks,
        flags=back.flags,
        none_acceptable=back.none_acceptable,
        comment=back.comment,
        skipped=back.skipped,
        edits=back.edits,
        written=back.written,
        follow_up=back.follow_up,
    )
