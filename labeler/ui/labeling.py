"""The labeling tab: guidelines, the prompt in context, N completions in this labeler's order, ranks, flags,
none acceptable, skip, comment, progress. Keyboard: digits rank the focused answer, F flags it, Enter submits,
S skips (see `KEYBOARD_JS`).

The data side (`next_view`, `submit_form`) works on plain values so it is tested without a browser.
"""

from __future__ import annotations

import html
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import gradio as gr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.db import read_session
from labeler.settings import current_guidelines
from labeler.stats import labeler_progress, waiting_for
from labeler.store import RankingIn, RankingRejected, lease_next_set, submit_ranking
from labeler.tables import FLAG_REASONS
from labeler.ui.deps import UIDeps, current_user

MAX_SLOTS = 8
NO_RANK = "-"
NOT_FLAGGED = "not flagged"
FLAG_CHOICES = [NOT_FLAGGED, *FLAG_REASONS]


@dataclass
class SetView:
    """One leased set as the page shows it; round-trips through the page as JSON."""

    set_id: int
    completion_ids: list[int]
    texts: list[str]
    prompt_markdown: str
    submission_id: str
    shown_at: float
    guidelines_version: int


def rank_choices(n: int) -> list[str]:
    return [NO_RANK, *map(str, range(1, n + 1))]


def render_conversation(messages: list[dict]) -> str:
    """The prompt with its full context, one block per turn."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    blocks = []
    for m in messages:
        body = m["content"] if m["role"] != "system" else f"*{m['content']}*"
        blocks.append(f"**{names.get(m['role'], m['role'])}:**\n\n{body}")
    return "\n\n---\n\n".join(blocks)


def next_view(engine: Engine, user_id: int) -> SetView | None:
    # The guidelines version is read first (a read transaction); the lease then reads its shortlist and writes
    # briefly, and its rows stay loaded after the commit (no transaction to read them back).
    with read_session(engine) as session:
        version = current_guidelines(session=session).version
    with Session(engine, expire_on_commit=False) as session:
        leased = lease_next_set(session=session, user_id=user_id)
        if leased is None:
            return None
        return SetView(
            set_id=leased.set.id,
            completion_ids=[c.id for c in leased.completions],
            texts=[c.text for c in leased.completions],
            prompt_markdown=render_conversation(leased.prompt.messages),
            submission_id=uuid.uuid4().hex,
            shown_at=time.time(),
            guidelines_version=version,
        )


def form_to_ranking(
    user_id: int, view: SetView, ranks: list[str], flags: list[str], none_acceptable: bool, comment: str
) -> RankingIn:
    """Read the form: rank choices ('-' = unranked) and flag choices per slot, in display order."""
    parsed_ranks, parsed_flags = {}, {}
    for cid, rank, flag in zip(view.completion_ids, ranks, flags, strict=False):
        if flag and flag != NOT_FLAGGED:
            parsed_flags[cid] = flag
            if rank and rank != NO_RANK:
                raise RankingRejected(
                    f"answer {view.completion_ids.index(cid) + 1} is both ranked and flagged: choose one"
                )
        elif rank and rank != NO_RANK:
            parsed_ranks[cid] = int(rank)
    return RankingIn(
        set_id=view.set_id,
        user_id=user_id,
        submission_id=view.submission_id,
        ranks=parsed_ranks,
        flags=parsed_flags,
        none_acceptable=bool(none_acceptable),
        comment=comment or "",
        seconds_spent=round(time.time() - view.shown_at, 2),
        guidelines_version=view.guidelines_version,
    )


def submit_form(
    engine: Engine,
    user_id: int,
    view: SetView,
    ranks: list[str],
    flags: list[str],
    none_acceptable: bool,
    comment: str,
) -> None:
    """Validate and store; raises RankingRejected with the exact problem."""
    ranking = form_to_ranking(user_id, view, ranks, flags, none_acceptable, comment)
    with Session(engine) as session:
        submit_ranking(session=session, ranking=ranking)


def skip_form(engine: Engine, user_id: int, view: SetView) -> None:
    ranking = RankingIn(
        set_id=view.set_id,
        user_id=user_id,
        submission_id=view.submission_id,
        skipped=True,
        seconds_spent=round(time.time() - view.shown_at, 2),
    )
    with Session(engine) as session:
        submit_ranking(session=session, ranking=ranking)


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
        current = gr.JSON(visible=False)
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
            comment = gr.Textbox(label="Comment (optional)", lines=1, elem_id="comment")
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
            current: asdict(view) if view else None,
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
            **show(next_view(engine, user.id), user.id, shown=laid_out),
            guide_md: guidelines.text,
            guide_box: gr.update(open=first_visit),
        }

    def on_submit(
        request: gr.Request, view: dict | None, none_acceptable: bool, note: str, *values: str
    ) -> dict:
        user = current_user(engine, request)
        if not view:
            return show(next_view(engine, user.id), user.id)
        shown = len(view["completion_ids"])
        try:
            submit_form(
                engine,
                user.id,
                SetView(**view),
                list(values[:MAX_SLOTS]),
                list(values[MAX_SLOTS:]),
                none_acceptable,
                note,
            )
        except RankingRejected as exc:
            return {status: f"⚠️ **Not submitted:** {html.escape(str(exc))}"}
        return show(next_view(engine, user.id), user.id, "✅ Saved.", shown)

    def on_skip(request: gr.Request, view: dict | None) -> dict:
        user = current_user(engine, request)
        if not view:
            return show(next_view(engine, user.id), user.id)
        skip_form(engine, user.id, SetView(**view))
        return show(next_view(engine, user.id), user.id, "Skipped.", len(view["completion_ids"]))

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
