"""The labeling tab: guidelines, the prompt in context, the set's answers in this labeler's order in the ranking
widget (`labeler/ui/ranker.py`: click or press numbers to rank, ties, flags, undo, edit an answer or write one),
none acceptable, comment,
skip and progress in a bar that stays on screen. Keyboard: numbers rank, `=` ties, F then a number flags,
Backspace undoes, Enter submits, S skips; "Undo last submit" takes the last submission back for two minutes
(labeler/store/undo.py).

The data side (`next_view`, `submit_form`) works on plain values so it is tested without a browser.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import gradio as gr
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from labeler.labels.conversations import Conversations, conversations
from labeler.labels.quality import OwnAgreement, own_agreement
from labeler.labels.stats import labeler_progress, waiting_for
from labeler.store.db import read_session
from labeler.store.leasing import LeasedSet, lease_by_token, lease_next_set
from labeler.store.settings import GuidelinesNews, current_guidelines, guidelines_news
from labeler.store.store import MAX_COMMENT_CHARS, LeaseGone, PageChoices, RankingRejected, submit_leased
from labeler.store.suggestions import shown_suggestion
from labeler.store.tables import FLAG_REASONS, Completion, Prompt, id_of
from labeler.store.undo import undo_last
from labeler.ui import ranker
from labeler.ui.deps import Recent, RecentUsers, TabLoad, UIDeps
from labeler.ui.ranker import page_token, ranker_value, read_choices, read_page
from labeler.ui.render import content_html, conversation_html, inline_html, page, text_html

logger = logging.getLogger(__name__)
__all__ = ["PageChoices", "read_choices", "read_page"]
T = TypeVar("T")


@dataclass
class SetView:
    """One leased set as the page shows it. Only `token` names the set on the page; everything else stays on
    the server, which reads it back from the lease record when the page submits."""

    token: str
    texts: list[str]  # the answers as HTML, in this labeler's order
    prompt_html: str
    sources: list[str] = field(default_factory=list)  # the answers' plain text, what an edit starts from
    suggested: list[int | None] | None = (
        None  # a judge's ranking by display position, when the page shows one
    )
    suggested_by: str | None = None  # that judge's name
    continues: bool = False  # the conversation can go on from this set: the page asks for a next user message


def next_view(
    engine: Engine, user_id: int, guidelines_version: int | None = None, talk: Conversations | None = None
) -> SetView | None:
    # The guidelines version (recorded on the lease) and the conversation settings (whether the page asks for a
    # next message) are read here unless the caller has them; the lease reads its shortlist and writes briefly,
    # and its rows stay loaded after the commit.
    if guidelines_version is None or talk is None:
        with read_session(engine) as session:
            if guidelines_version is None:
                guidelines_version = current_guidelines(session=session).version
            if talk is None:
                talk = conversations(session=session)
    with Session(engine, expire_on_commit=False) as session:
        leased = lease_next_set(
            session=session,
            user_id=user_id,
            guidelines_version=guidelines_version,
            later_turns_first=talk.later_turns_first,
        )
        return _view(leased, asks_next_message(talk, leased.prompt)) if leased is not None else None


def asks_next_message(settings: Conversations, prompt: Prompt) -> bool:
    """Whether the page offers the next-message box: the labelers of this prompt's source write next turns and
    the conversation is not at its depth or stopped."""
    return (
        settings.source_of(prompt.source) == "labeler" and prompt.turn < settings.depth and not prompt.stopped
    )


CUT_OFF = '<div class="rl-cut" title="the model hit its token limit">… cut off at the length limit</div>'


def answer_html(completion: Completion) -> str:
    """One answer as the page shows it; an answer the token limit cut off says so at its end."""
    body = content_html(completion.text)
    return body + CUT_OFF if completion.finish_reason == "length" else body


def _view(leased: LeasedSet, continues: bool = False) -> SetView:
    assert leased.assignment.token is not None
    suggested, suggested_by = shown_suggestion(leased.assignment, leased.completions)
    return SetView(
        token=leased.assignment.token,
        texts=[answer_html(c) for c in leased.completions],
        prompt_html=page(conversation_html(leased.prompt.messages)),
        sources=[c.text for c in leased.completions],
        suggested=suggested,
        suggested_by=suggested_by,
        continues=continues,
    )


def submit_form(engine: Engine, user_id: int, token: str, choices: PageChoices) -> None:
    """Validate and store the choices for the set leased under `token`. Raises RankingRejected with the exact
    problem."""
    if not isinstance(token, str) or len(token) > 64:
        raise LeaseGone("this page's set is not leased to you; reload the page for your current set")
    with Session(engine) as session:
        lease = lease_by_token(session=session, user_id=user_id, token=token)
        submit_leased(session=session, lease=lease, choices=choices)


class PerLabeler(Generic[T]):
    """A per-labeler figure, recomputed by `compute(session, user_id)` at most every `ttl` seconds. The waiting
    count scans every waiting set (on a busy store a sixth of a submit's database time) and the agreement reads
    the labeler's shared sets, for figures that change slowly."""

    def __init__(self, compute: Callable[[Session, int], T], ttl: float):
        self.compute, self.ttl = compute, ttl
        self._seen: dict[int, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, user_id: int) -> T:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(user_id)
        if seen is not None and now - seen[0] < self.ttl:
            return seen[1]
        value = self.compute(session, user_id)
        with self._lock:
            self._seen[user_id] = (now, value)
        return value


@dataclass
class OwnFigures:
    """The caches behind a labeler's progress line."""

    waiting: PerLabeler[int] = field(
        default_factory=lambda: PerLabeler(lambda s, u: waiting_for(session=s, user_id=u), ttl=15.0)
    )
    agreement: PerLabeler[OwnAgreement] = field(
        default_factory=lambda: PerLabeler(lambda s, u: own_agreement(session=s, user_id=u), ttl=60.0)
    )


def progress_text(engine: Engine, user_id: int, figures: OwnFigures) -> str:
    """The labeler's own line: today's count and median time per set, agreement with the other labelers of the
    same sets (once there is overlap), total and waiting."""
    with read_session(engine) as session:
        p = labeler_progress(session=session, user_id=user_id, waiting=figures.waiting.get(session, user_id))
        agreement = figures.agreement.get(session, user_id)
    parts = [f"**Today:** {p.today}"]
    if p.median_seconds_today is not None:
        parts.append(f"median {p.median_seconds_today:.0f} s per set")
    if agreement.mean_tau is not None:
        parts.append(
            f"**Agreement with others:** {agreement.mean_tau:+.2f} (tau, {agreement.sets} shared sets)"
        )
    parts += [f"**Total:** {p.total}", f"**Waiting:** {p.waiting}"]
    return " · ".join(parts)


BELOW = (
    '<p class="rl-below">⬇ The set to rank is below these guidelines; they fold away after your first '
    "submit and stay one click away.</p>"
)


def guidelines_html(text: str) -> str:
    """The guidelines as the page shows them, in a box of their own height, saying where the set is."""
    return BELOW + page(content_html(text))


def news_html(news: GuidelinesNews | None, max_lines: int = 8) -> str:
    """The banner for guidelines newer than the ones the labeler last ranked under: versions and changed lines."""
    if news is None:
        return ""
    by = f" by {text_html(news.current.author)}" if news.current.author else ""
    head = (
        f"<p>📣 <strong>The guidelines changed</strong> (version {news.seen} → {news.current.version}{by}); "
        "the whole text is under <em>Guidelines</em> above.</p>"
    )
    items = []
    for label, lines in (("Added", news.added), ("Removed", news.removed)):
        items += [
            f"<li>{label}: {inline_html(line.strip(), max_chars=200)}</li>" for line in lines[:max_lines]
        ]
        if len(lines) > max_lines:
            items.append(f"<li>… {len(lines) - max_lines} more lines {label.lower()}</li>")
    return page(head, f"<ul>{''.join(items)}</ul>" if items else "")


def own_news(engine: Engine, user_id: int, current: int) -> GuidelinesNews | None:
    with read_session(engine) as session:
        return guidelines_news(session=session, user_id=user_id, current=current)


SERVER_TROUBLE = (
    "⚠️ **Not saved:** the server had a problem; your choices are still here. Submit again in a moment."
)


def _retrying_once(handler: Callable[..., dict], args: tuple) -> dict:
    """`handler(*args)`, run again once after a transient store error (a lock held too long, a dropped
    connection); a submit is idempotent (its id is its lease's), so a second run never stores it twice."""
    try:
        return handler(*args)
    except OperationalError:
        logger.warning("labeling handler %s: store error, retrying once", handler.__name__)
        time.sleep(0.25)  # outside any transaction: the handler's session is closed
        return handler(*args)


def survivable(status: Any) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Labeling handlers that fail leave the page as it was: a transient store error is retried once
    (`_retrying_once`), and any other failure puts one plain sentence in `status` next to the buttons, replacing
    a stale "Saved."; the traceback goes to the server log only. A gr.Error (not logged in, account disabled)
    passes through as it is."""

    def decorate(handler: Callable[..., dict]) -> Callable[..., dict]:
        @functools.wraps(handler)
        def wrapped(*args: Any) -> dict:
            try:
                return _retrying_once(handler, args)
            except gr.Error:
                raise
            except Exception:
                logger.exception("labeling handler %s failed", handler.__name__)
                return {status: SERVER_TROUBLE}

        return wrapped

    return decorate


NOTHING_WAITING = "No sets are waiting right now. New ones are being generated; check back in a minute."
OPEN_TO_LABEL = (
    "Admins start on the dashboard and lease nothing by opening the app: press Start labeling to rank a set."
)

LABELING_CSS = ranker.CSS


def build_labeling_tab(deps: UIDeps) -> TabLoad:
    """Build the tab; returns the components `build_ui` wires to page load."""
    engine = deps.engine
    figures = OwnFigures()
    users = RecentUsers(engine, clock=deps.clock)
    guidelines_version = Recent(engine, lambda s: current_guidelines(session=s).version, clock=deps.clock)
    talk = Recent(engine, lambda s: conversations(session=s), clock=deps.clock)
    with gr.Tab("Label", id="label"):
        with gr.Accordion("Guidelines", open=False) as guide_box:
            guide_md = gr.HTML(elem_id="guidelines")
        news_md = gr.HTML(elem_id="guidelines-news")
        progress = gr.Markdown(elem_id="progress")
        prompt_md = gr.HTML(elem_id="prompt")
        empty_md = gr.Markdown("", elem_id="empty")
        # admins open the app on the dashboard and lease nothing until they ask (labelers get their set at load)
        start = gr.Button("Start labeling", elem_id="start-labeling", visible=False, size="sm")
        answers = gr.HTML(
            ranker_value(None, None),
            html_template=ranker.TEMPLATE,
            js_on_load=ranker.JS,
            elem_id="ranker",
            reasons=list(FLAG_REASONS),
        )
        with gr.Column(elem_id="action-bar"):
            status = gr.Markdown(elem_id="status")
            with gr.Row(equal_height=True):
                submit = gr.Button("Submit (Enter)", variant="primary", elem_id="submit-btn", scale=2)
                skip = gr.Button("Skip (S)", elem_id="skip-btn", scale=1)
                undo = gr.Button("Undo last submit", elem_id="undo-btn", scale=1, size="sm")
                none_ok = gr.Checkbox(label="None acceptable", elem_id="none-acceptable", scale=1)
                comment = gr.Textbox(
                    label="Comment (optional)",
                    placeholder=f"Comment (optional, up to {MAX_COMMENT_CHARS:,} characters; Enter submits)",
                    lines=1,
                    max_length=MAX_COMMENT_CHARS,
                    elem_id="comment",
                    scale=3,
                )
            follow_up = gr.Textbox(
                label="Continue the conversation (optional): the user's next message after the answer you "
                "ranked first",
                lines=2,
                max_length=MAX_COMMENT_CHARS,
                elem_id="follow-up",
                visible=False,
            )

    def show(view: SetView | None, user_id: int, message: str = "") -> dict:
        """Values that put `view` on screen (values only: no component is rebuilt), with the banner and the new
        text when the guidelines changed since the labeler's last ranking."""
        news = own_news(engine, user_id, guidelines_version.get())
        return {
            news_md: news_html(news),
            guide_md: guidelines_html(news.current.text) if news else gr.update(),
            answers: ranker_value(
                view.token,
                view.texts,
                sources=view.sources,
                suggested=view.suggested,
                suggested_by=view.suggested_by,
            )
            if view
            else ranker_value(None, None),
            progress: progress_text(engine, user_id, figures),
            status: message,
            comment: "",
            follow_up: gr.update(value="", visible=bool(view and view.continues)),
            none_ok: False,
            prompt_md: view.prompt_html if view else "",
            empty_md: "" if view else NOTHING_WAITING,
        }

    def show_next(user_id: int, message: str = "") -> dict:
        """The labeler's next set (or the one still leased to them) on screen, with `message`."""
        return show(next_view(engine, user_id, guidelines_version.get(), talk.get()), user_id, message)

    def on_load(request: gr.Request) -> dict:
        """A labeler's page opens on their set; an admin's opens on the dashboard and leases nothing until they
        press "Start labeling" (a set leased and never finished would wait out its lease one label short)."""
        user = users.get(request)
        user_id = id_of(user)
        with read_session(engine) as session:
            guidelines = current_guidelines(session=session)
            first_visit = labeler_progress(session=session, user_id=user_id, waiting=0).total == 0
        admin = user.role == "admin"
        view = None if admin else next_view(engine, user_id, guidelines.version, talk.get())
        return {
            **show(view, user_id),
            start: gr.update(visible=admin),
            empty_md: OPEN_TO_LABEL if admin else ("" if view else NOTHING_WAITING),
            guide_md: guidelines_html(guidelines.text),
            guide_box: gr.update(open=first_visit),
        }

    @survivable(status)
    def on_start(request: gr.Request, page: Any) -> dict:
        """ "Start labeling": lease a set if the page shows none (a set on screen keeps its choices)."""
        if isinstance(page, dict) and page.get("token"):
            return {answers: gr.update()}  # unchanged
        return show_next(users.user_id(request))

    @survivable(status)
    def on_submit(
        request: gr.Request, page: Any, none_acceptable: bool, note: str, next_message: str
    ) -> dict:
        user_id = users.user_id(request)
        try:
            if not (token := page_token(page)):
                return show_next(user_id)
            choices = read_page(page, none_acceptable, note)
            choices.follow_up = next_message if isinstance(next_message, str) else ""
            submit_form(engine, user_id, token, choices)
        except RankingRejected as exc:
            return rejected(exc, user_id)
        # the guidelines fold away after a submit (they stay one click away)
        return {**show_next(user_id, "✅ Saved."), guide_box: gr.update(open=False)}

    @survivable(status)
    def on_skip(request: gr.Request, page: Any) -> dict:
        user_id = users.user_id(request)
        try:
            if not (token := page_token(page)):
                return show_next(user_id)
            submit_form(engine, user_id, token, PageChoices([], [], skipped=True))
        except RankingRejected as exc:
            return rejected(exc, user_id)
        return show_next(user_id, "Skipped.")

    @survivable(status)
    def on_undo(request: gr.Request) -> dict:
        """The labeler's last submission taken back (labeler/store/undo.py): its set on screen with their choices."""
        user_id = users.user_id(request)
        try:
            with Session(engine, expire_on_commit=False) as session:
                back = undo_last(session=session, user_id=user_id)
        except RankingRejected as exc:
            return {status: f"⚠️ {html.escape(str(exc))}"}
        continues = asks_next_message(talk.get(), back.leased.prompt)
        view = _view(back.leased, continues)
        return {
            **show(view, user_id, "↩️ Your last submission is back on screen: change it and submit again."),
            answers: ranker_value(
                view.token,
                view.texts,
                back.ranks,
                back.flags,
                sources=view.sources,
                edits=back.edits,
                written=back.written,
            ),
            none_ok: back.none_acceptable,
            comment: back.comment,
            follow_up: gr.update(value=back.follow_up, visible=continues or bool(back.follow_up)),
        }

    def rejected(exc: RankingRejected, user_id: int) -> dict:
        """The reason on screen (the labeler's choices stay as they were); when the page's set is gone (not this
        labeler's, or filled after the lease expired), the labeler's current set comes with it."""
        message = f"⚠️ **Not submitted:** {html.escape(str(exc))}"
        if isinstance(exc, LeaseGone):
            return show_next(user_id, message)
        return {status: message}

    outputs = [
        *(answers, progress, status, comment, follow_up, none_ok, prompt_md, empty_md, guide_box, news_md),
        guide_md,
    ]
    # Not queued: a submit is one short request (POST /run/submit_ranking) rather than a queue entry plus an
    # event stream, which halved its cost on the server. Writers take turns in the store (labeler/store/db.py).
    submit.click(
        on_submit, [answers, none_ok, comment, follow_up], outputs, api_name="submit_ranking", queue=False
    )
    skip.click(on_skip, [answers], outputs, api_name="skip_set", queue=False)
    start.click(on_start, [answers], outputs, api_name="start_labeling", queue=False)
    undo.click(on_undo, None, outputs, api_name="undo_submit", queue=False)
    return TabLoad(on_load, [*outputs, start])
