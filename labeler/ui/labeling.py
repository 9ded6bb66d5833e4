"""The labeling tab: guidelines, the prompt in context, N completions in this labeler's order, ranks, flags,
none acceptable, skip, comment, progress. Keyboard: digits rank the focused answer, F flags it, Enter submits,
S skips (see `KEYBOARD_JS`).

The data side (`next_view`, `submit_form`) works on plain values so it is tested without a browser.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.db import read_session
from labeler.settings import current_guidelines
from labeler.stats import labeler_progress, waiting_for
from labeler.store import (
    MAX_COMMENT_CHARS,
    LeasedSet,
    LeaseGone,
    PageChoices,
    RankingRejected,
    lease_by_token,
    lease_next_set,
    submit_leased,
)
from labeler.tables import FLAG_REASONS
from labeler.ui.deps import UIDeps, current_user
from labeler.ui.render import safe_markdown

logger = logging.getLogger(__name__)
MAX_SLOTS = 8
NO_RANK = "-"
NOT_FLAGGED = "not flagged"
FLAG_CHOICES = [NOT_FLAGGED, *FLAG_REASONS]


@dataclass
class SetView:
    """One leased set as the page shows it. Only `token` goes to the page (it names the lease); everything else
    stays on the server, which reads it back from the lease record when the page submits."""

    token: str
    texts: list[str]
    prompt_markdown: str


def rank_choices(n: int) -> list[str]:
    return [NO_RANK, *map(str, range(1, n + 1))]


def render_conversation(messages: list[dict]) -> str:
    """The prompt with its full context, one block per turn."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    blocks = []
    for m in messages:
        content = safe_markdown(str(m.get("content", "")))
        body = content if m["role"] != "system" else f"*{content}*"
        blocks.append(f"**{names.get(m['role'], m['role'])}:**\n\n{body}")
    return "\n\n---\n\n".join(blocks)


def next_view(engine: Engine, user_id: int, guidelines_version: int | None = None) -> SetView | None:
    # The guidelines version (read here unless the caller has it) is recorded on the lease; the lease reads its
    # shortlist and writes briefly, and its rows stay loaded after the commit.
    version = guidelines_version
    if version is None:
        with read_session(engine) as session:
            version = current_guidelines(session=session).version
    with Session(engine, expire_on_commit=False) as session:
        leased = lease_next_set(session=session, user_id=user_id, guidelines_version=version)
        return _view(leased) if leased is not None else None


def _view(leased: LeasedSet) -> SetView:
    assert leased.assignment.token is not None
    return SetView(
        token=leased.assignment.token,
        texts=[safe_markdown(c.text) for c in leased.completions],
        prompt_markdown=render_conversation(leased.prompt.messages),
    )


def read_choices(
    ranks: list[str], flags: list[str], none_acceptable: bool, comment: str, *, skipped: bool = False
) -> PageChoices:
    """The form's values by display position: rank choices ('-' = unranked) and flag choices."""
    parsed_ranks: list[int | None] = []
    parsed_flags: list[str | None] = []
    for i, (rank, flag) in enumerate(zip(ranks, flags, strict=False)):
        flagged = bool(flag) and flag != NOT_FLAGGED
        ranked = bool(rank) and rank != NO_RANK
        if flagged and ranked:
            raise RankingRejected(f"answer {i + 1} is both ranked and flagged: choose one")
        if ranked and not str(rank).isdigit():
            raise RankingRejected(f"answer {i + 1}: rank {str(rank)[:20]!r} is not a whole number")
        parsed_ranks.append(int(rank) if ranked else None)
        parsed_flags.append(flag if flagged else None)
    return PageChoices(
        ranks=parsed_ranks,
        flags=parsed_flags,
        none_acceptable=bool(none_acceptable),
        comment=comment or "",
        skipped=skipped,
    )


def submit_form(engine: Engine, user_id: int, token: str, choices: PageChoices) -> int:
    """Validate and store the choices for the set leased under `token`; returns how many answers it had.
    Raises RankingRejected with the exact problem."""
    if not isinstance(token, str) or len(token) > 64:
        raise LeaseGone("this page's set is not leased to you; reload the page for your current set")
    with Session(engine) as session:
        lease = lease_by_token(session=session, user_id=user_id, token=token)
        answers = len(lease.display_order)
        submit_leased(session=session, lease=lease, choices=choices)
        return answers


class WaitingCounts:
    """Sets waiting per labeler, recounted at most every `ttl` seconds. The count scans every waiting set: on a
    busy store it was a sixth of a submit's database time, for a figure that changes slowly."""

    def __init__(self, ttl: float = 15.0):
        self.ttl = ttl
        self._counts: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, user_id: int) -> int:
        now = time.monotonic()
        with self._lock:
            seen = self._counts.get(user_id)
        if seen is not None and now - seen[0] < self.ttl:
            return seen[1]
        count = waiting_for(session=session, user_id=user_id)
        with self._lock:
            self._counts[user_id] = (now, count)
        return count


def progress_text(engine: Engine, user_id: int, waiting: WaitingCounts) -> str:
    with read_session(engine) as session:
        p = labeler_progress(session=session, user_id=user_id, waiting=waiting.get(session, user_id))
    return f"**Today:** {p.today} · **Total:** {p.total} · **Waiting:** {p.waiting}"


def one_clear_sentence(handler: Callable[..., dict]) -> Callable[..., dict]:
    """A labeler sees one sentence when the server fails (the traceback goes to the server log only); a
    gr.Error (not logged in, account disabled) passes through as it is."""

    @functools.wraps(handler)
    def wrapped(*args: Any) -> dict:
        try:
            return handler(*args)
        except gr.Error:
            raise
        except Exception as exc:
            logger.exception("labeling handler %s failed", handler.__name__)
            raise gr.Error(
                "The server could not save this; nothing was stored. Try again in a moment."
            ) from exc

    return wrapped


NOTHING_WAITING = "No sets are waiting right now. New ones are being generated; check back in a minute."

KEYBOARD_JS = """
() => {
  let focused = 0;
  const slot = (i) => document.querySelector(`#slot-${i}`);
  document.addEventListener('focusin', (e) => { const s = e.target.closest('[id^="slot-"]'); if (s) focused = +s.id.split('-')[1]; });
  document.addEventListener('click', (e) => { const s = e.target.closest('[id^="slot-"]'); if (s) focused = +s.id.split('-')[1]; });
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type === 'text'))) return;
    if (!document.querySelector('#submit-btn')) return;
    if (/^[1-9]$/.test(e.key)) {
      const input = document.querySelector(`#rank-${focused} input[value="${e.key}"]`);
      if (input) { input.click(); e.preventDefault(); }
    } else if (e.key === 'f' || e.key === 'F') {
      const flagged = document.querySelector(`#flag-${focused} input:checked`);
      const target = (flagged && flagged.value !== 'not flagged') ? 'not flagged' : 'nonsensical';
      const input = document.querySelector(`#flag-${focused} input[value="${target}"]`);
      if (input) { input.click(); e.preventDefault(); }
    } else if (e.key === 'Enter') {
      document.querySelector('#submit-btn').click(); e.preventDefault();
    } else if (e.key === 's' || e.key === 'S') {
      document.querySelector('#skip-btn').click(); e.preventDefault();
    }
  });
}
"""

LABELING_CSS = """
#slots.stacked > .row, #slots.stacked .slot-row { flex-direction: column !important; }
.slot { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; }
"""


def build_labeling_tab(deps: UIDeps) -> dict:
    """Build the tab; returns the components `build_ui` wires to page load."""
    engine = deps.engine
    laid_out = min(deps.completions_per_set, MAX_SLOTS)
    waiting = WaitingCounts()
    with gr.Tab("Label", id="label"):
        with gr.Accordion("Guidelines", open=False) as guide_box:
            guide_md = gr.Markdown()
        progress = gr.Markdown(elem_id="progress")
        current = gr.Textbox(visible=False, elem_id="lease-token")  # the lease's token, nothing else
        prompt_md = gr.Markdown(elem_id="prompt")
        empty_md = gr.Markdown("", elem_id="empty")
        layout = gr.Radio(["side by side", "stacked"], value="side by side", label="Layout", elem_id="layout")
        slot_boxes, slot_texts, rank_inputs, flag_inputs = [], [], [], []
        with gr.Row(elem_id="slots", elem_classes=["slot-row"]):
            for i in range(MAX_SLOTS):
                with gr.Column(
                    visible=i < laid_out, elem_id=f"slot-{i}", elem_classes=["slot"], min_width=260
                ) as box:
                    slot_texts.append(gr.Markdown(elem_id=f"text-{i}"))
                    rank_inputs.append(
                        gr.Radio(
                            rank_choices(laid_out),
                            value=NO_RANK,
                            label=f"Rank of answer {i + 1}",
                            elem_id=f"rank-{i}",
                        )
                    )
                    flag_inputs.append(
                        gr.Radio(FLAG_CHOICES, value=NOT_FLAGGED, label="Flag", elem_id=f"flag-{i}")
                    )
                slot_boxes.append(box)
        with gr.Row():
            none_ok = gr.Checkbox(label="None acceptable", elem_id="none-acceptable")
            comment = gr.Textbox(
                label="Comment (optional)", lines=1, max_length=MAX_COMMENT_CHARS, elem_id="comment"
            )
        with gr.Row():
            submit = gr.Button("Submit (Enter)", variant="primary", elem_id="submit-btn")
            skip = gr.Button("Skip (S)", elem_id="skip-btn")
        status = gr.Markdown(elem_id="status")

    def show(view: SetView | None, user_id: int, message: str = "", shown: int | None = None) -> dict:
        """Updates that put `view` on screen. `shown` is how many answers the page shows now: when the next set
        has as many, only values are sent. Layout and rank choices change only when the count does: Gradio
        rebuilds a component's config on the event loop for every property update (about 2 ms each), which
        stalled every other request while 32 labelers opened the page."""
        n = len(view.texts) if view else 0
        updates: dict = {
            progress: progress_text(engine, user_id, waiting),
            status: message,
            comment: "",
            none_ok: False,
            current: view.token if view else "",
            prompt_md: view.prompt_markdown if view else "",
            empty_md: "" if view else NOTHING_WAITING,
        }
        for i in range(MAX_SLOTS):
            updates[slot_texts[i]] = f"**Answer {i + 1}**\n\n{view.texts[i]}" if i < n else ""
            updates[flag_inputs[i]] = NOT_FLAGGED
            if n == shown:
                updates[rank_inputs[i]] = NO_RANK
            else:
                updates[slot_boxes[i]] = gr.update(visible=i < n)
                updates[rank_inputs[i]] = gr.update(choices=rank_choices(n), value=NO_RANK)
        return updates

    def on_load(request: gr.Request) -> dict:
        user = current_user(engine, request)
        with read_session(engine) as session:
            guidelines = current_guidelines(session=session)
            first_visit = labeler_progress(session=session, user_id=user.id, waiting=0).total == 0
        return {
            **show(next_view(engine, user.id, guidelines.version), user.id, shown=laid_out),
            guide_md: safe_markdown(guidelines.text),
            guide_box: gr.update(open=first_visit),
        }

    @one_clear_sentence
    def on_submit(request: gr.Request, token: str, none_acceptable: bool, note: str, *values: str) -> dict:
        user = current_user(engine, request)
        if not token:
            return show(next_view(engine, user.id), user.id)
        try:
            choices = read_choices(list(values[:MAX_SLOTS]), list(values[MAX_SLOTS:]), none_acceptable, note)
            shown = submit_form(engine, user.id, token, choices)
        except RankingRejected as exc:
            return rejected(exc, user.id)
        return show(next_view(engine, user.id), user.id, "✅ Saved.", shown)

    @one_clear_sentence
    def on_skip(request: gr.Request, token: str) -> dict:
        user = current_user(engine, request)
        if not token:
            return show(next_view(engine, user.id), user.id)
        try:
            shown = submit_form(engine, user.id, token, PageChoices([], [], skipped=True))
        except RankingRejected as exc:
            return rejected(exc, user.id)
        return show(next_view(engine, user.id), user.id, "Skipped.", shown)

    def rejected(exc: RankingRejected, user_id: int) -> dict:
        """The reason on screen; when the page's set is gone (not this labeler's, or filled after the lease
        expired), the labeler's current set comes with it."""
        message = f"⚠️ **Not submitted:** {html.escape(str(exc))}"
        if isinstance(exc, LeaseGone):
            return show(next_view(engine, user_id), user_id, message)
        return {status: message}

    outputs = [
        progress,
        status,
        comment,
        none_ok,
        current,
        prompt_md,
        empty_md,
        *slot_boxes,
        *slot_texts,
        *rank_inputs,
        *flag_inputs,
    ]
    # Not queued: a submit is one short request (POST /run/submit_ranking) rather than a queue entry plus an
    # event stream, which halved its cost on the server. Writers take turns in the store (labeler/db.py).
    submit.click(
        on_submit,
        [current, none_ok, comment, *rank_inputs, *flag_inputs],
        outputs,
        api_name="submit_ranking",
        queue=False,
    )
    skip.click(on_skip, [current], outputs, api_name="skip_set", queue=False)
    layout.change(
        None,
        [layout],
        None,
        js="(v) => { document.querySelector('#slots').classList.toggle('stacked', v === 'stacked'); }",
    )
    return {"load": on_load, "outputs": [*outputs, guide_md, guide_box]}
