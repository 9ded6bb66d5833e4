"""The ranking widget: one `gr.HTML` component that shows a set's answers and holds the labeler's ranking.

Click answers (or press their numbers) from best to worst: each gets the next rank. Shift+click, or `=` before
a number, gives the same rank as the last one (a tie); clicking a ranked answer takes its rank back, and
Backspace undoes the last one. Dragging an answer's header onto another answer ranks it just above that one
(onto an unranked answer: last). "Layout" switches between side by side and one under another (remembered by
the browser). Each answer has a flag menu; a flagged answer is not ranked. A summary line
reads the order back ("2 > 1 = 4 > 3"). Enter submits and S skips (`#submit-btn`, `#skip-btn`, outside the
widget); Enter never toggles a focused checkbox.

Its value is a JSON object, the same in both directions:

    {"token": "9f...", "answers": ["<p>...</p>", ...], "ranks": [2, 1, null, 1], "flags": [null, null, "harmful", null]}

The server sends the token, the answers (HTML it rendered itself, `labeler.ui.render.content_html`) and empty
choices; the page sends it back with the choices filled in. Only the token and the choices are read back
(`read_page`); the answers the page sends are ignored. One component instead of a column, a text, a rank radio
and a flag radio per answer: a submit has three inputs and seven outputs rather than 19 and 39, and Gradio's
per-component work was the larger part of a submit's server time.

The answers' HTML is placed with JS template expressions (`${...}`), never with Handlebars (`{{...}}`): Gradio
runs Handlebars first and then evaluates the result as a JS template literal, so text substituted by Handlebars
would be read as code.
"""

from __future__ import annotations

from typing import Any

from labeler.store.store import PageChoices, RankingRejected
from labeler.store.tables import FLAG_REASONS

MAX_ANSWERS = 16  # a page may not send choices for more answers than this

EMPTY: dict[str, Any] = {"token": "", "answers": [], "ranks": [], "flags": []}

TEMPLATE = """
<div class="rl-ranker" data-token="${value && value.token ? value.token : ''}">
${(value && value.answers && value.answers.length) ? `
  <div class="rl-summary" aria-live="polite">${(() => {
    const ranks = value.ranks || [], flags = value.flags || [];
    const levels = [...new Set(ranks.filter(r => r != null))].sort((a, b) => a - b);
    const order = levels.map(l => ranks.map((r, i) => r === l ? i + 1 : null).filter(x => x).join(' = ')).join(' &gt; ');
    const flagged = flags.map((f, i) => f ? `${i + 1} (${f.replace('_', ' ')})` : null).filter(x => x);
    const left = value.answers.length - ranks.filter(r => r != null).length - flagged.length;
    return (order ? `<b>Your order:</b> <span class="rl-order">${order}</span>` : `Click the answers from best to worst (or press their numbers). Shift+click or <kbd>=</kbd> ties with the last one.`)
      + (flagged.length ? ` · <b>Flagged:</b> ${flagged.join(', ')}` : '')
      + (left > 0 && order ? ` · ${left} left` : '')
      + (order || flagged.length ? ` <button type="button" class="rl-clear">Clear</button>` : '')
      + ` <button type="button" class="rl-layout" title="answers side by side or one under another">Layout</button>`;
  })()}</div>
  <div class="rl-cards">
  ${value.answers.map((answer, i) => {
    const rank = (value.ranks || [])[i], flag = (value.flags || [])[i];
    return `<div class="rl-card${rank != null ? ' rl-ranked' : ''}${flag ? ' rl-flagged' : ''}" id="answer-${i}" data-i="${i}" tabindex="0">
      <div class="rl-head" draggable="true" title="drag onto another answer to rank this one just above it">
        <span class="rl-grip" aria-hidden="true">⠿</span>
        <span class="rl-badge" title="rank">${rank != null ? rank : (flag ? '⚑' : '–')}</span>
        <b>Answer ${i + 1}</b>
        <select class="rl-flag" data-i="${i}" aria-label="Flag answer ${i + 1}">
          <option value="">Flag…</option>
          ${reasons.map(r => `<option value="${r}"${flag === r ? ' selected' : ''}>${r.replace('_', ' ')}</option>`).join('')}
        </select>
      </div>
      <div class="rl-body">${answer}</div>
    </div>`;
  }).join('')}
  </div>` : ''}
</div>
"""

JS = """
const current = () => props.value || {token: '', answers: [], ranks: [], flags: []};
let pending = null;  // '=' (tie) or 'f' (flag) typed before a number
let stack = [];      // answers in the order they were ranked, for undo
let token = current().token;

function unrank(ranks, i) {
  const r = ranks[i];
  ranks[i] = null;
  if (r != null && !ranks.includes(r)) ranks.forEach((x, j) => { if (x != null && x > r) ranks[j] = x - 1; });
  stack = stack.filter(x => x !== i);
}
function put(ranks, flags) {
  props.value = {...current(), ranks, flags};
  setTimeout(syncMenus, 0);
}
function pick(i, tie) {
  const v = current();
  if (!(i >= 0 && i < v.answers.length)) return;
  const ranks = [...v.ranks], flags = [...v.flags];
  if (ranks[i] != null) {
    unrank(ranks, i);
  } else {
    const top = Math.max(0, ...ranks.filter(r => r != null));
    ranks[i] = tie && top > 0 ? top : top + 1;
    flags[i] = null;
    stack.push(i);
  }
  put(ranks, flags);
}
function flag(i, reason) {
  const v = current();
  if (!(i >= 0 && i < v.answers.length)) return;
  const ranks = [...v.ranks], flags = [...v.flags];
  if (reason) unrank(ranks, i);
  flags[i] = reason || null;
  put(ranks, flags);
}
function levelsOf(ranks) {  // answers grouped by rank, best first
  const levels = [...new Set(ranks.filter(r => r != null))].sort((a, b) => a - b);
  return levels.map(l => ranks.map((r, i) => r === l ? i : null).filter(x => x !== null));
}
function moveAbove(i, j) {  // drag: answer i ranked just above answer j (j unranked: i goes last)
  const v = current();
  if (i === j || !(i >= 0 && i < v.answers.length) || !(j >= 0 && j < v.answers.length)) return;
  const flags = [...v.flags];
  flags[i] = null;
  const levels = levelsOf(v.ranks).map(l => l.filter(x => x !== i)).filter(l => l.length);
  const at = levels.findIndex(l => l.includes(j));
  if (at < 0) levels.push([i]); else levels.splice(at, 0, [i]);
  const ranks = v.ranks.map(() => null);
  levels.forEach((l, k) => l.forEach(x => { ranks[x] = k + 1; }));
  stack = levels.flat();
  put(ranks, flags);
}
function applyLayout() {
  element.classList.toggle('rl-stacked', localStorage.getItem('rankloop-layout') === 'stacked');
}
applyLayout();
let dragged = null;
element.addEventListener('dragstart', (e) => {
  const card = e.target.closest && e.target.closest('.rl-card');
  if (!card) return;
  dragged = +card.dataset.i;
  e.dataTransfer.effectAllowed = 'move';
  e.dataTransfer.setData('text/plain', String(dragged));
});
element.addEventListener('dragover', (e) => {
  if (dragged !== null && e.target.closest('.rl-card')) e.preventDefault();
});
element.addEventListener('drop', (e) => {
  const card = e.target.closest('.rl-card');
  if (dragged === null || !card) return;
  e.preventDefault();
  moveAbove(dragged, +card.dataset.i);
  dragged = null;
});
element.addEventListener('dragend', () => { dragged = null; });
function syncMenus() {
  const flags = current().flags || [];
  element.querySelectorAll('select.rl-flag').forEach(s => { s.value = flags[+s.dataset.i] || ''; });
}

element.addEventListener('click', (e) => {
  const t = e.target;
  if (t.closest('.rl-clear')) {
    const v = current();
    stack = [];
    put(v.ranks.map(() => null), v.flags.map(() => null));
    return;
  }
  if (t.closest('.rl-layout')) {
    const stacked = localStorage.getItem('rankloop-layout') === 'stacked';
    localStorage.setItem('rankloop-layout', stacked ? 'side' : 'stacked');
    applyLayout();
    return;
  }
  if (t.closest('select, option, a, input, button')) return;
  if (String(window.getSelection ? window.getSelection() : '').length > 0) return;  // selecting text
  const card = t.closest('.rl-card');
  if (card) pick(+card.dataset.i, e.shiftKey);
});
element.addEventListener('change', (e) => {
  const s = e.target.closest('select.rl-flag');
  if (s) flag(+s.dataset.i, s.value);
});
watch('value', () => {
  const v = current();
  syncMenus();
  if (v.token !== token) {  // a new set from the server: new undo history, and the prompt comes into view
    token = v.token;
    stack = [];
    pending = null;
    const prompt = document.querySelector('#prompt');
    if (prompt && prompt.getBoundingClientRect().top < 0) prompt.scrollIntoView({block: 'start'});
  }
});

window.rankloopKey = (e) => {
  const t = e.target;
  if (!element.isConnected || !current().token || e.ctrlKey || e.metaKey || e.altKey) return;
  if (t && (t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || (t.tagName === 'INPUT' && t.type !== 'checkbox' && t.type !== 'radio'))) return;
  if (e.key === 'Enter') {
    e.preventDefault(); e.stopPropagation();
    const submit = document.querySelector('#submit-btn');
    if (submit) submit.click();
  } else if (/^[1-9]$/.test(e.key)) {
    e.preventDefault();
    if (pending === 'f') { const i = +e.key - 1; flag(i, (current().flags || [])[i] ? null : 'nonsensical'); }
    else pick(+e.key - 1, pending === '=');
    pending = null;
  } else if (e.key === '=') { e.preventDefault(); pending = '='; }
  else if (e.key === 'f' || e.key === 'F') { e.preventDefault(); pending = 'f'; }
  else if (e.key === 'Backspace' || e.key === 'u' || e.key === 'U') {
    e.preventDefault();
    if (stack.length) pick(stack[stack.length - 1], false);
  } else if (e.key === 's' || e.key === 'S') {
    e.preventDefault();
    const skip = document.querySelector('#skip-btn');
    if (skip) skip.click();
  } else if (e.key === 'Escape') { pending = null; }
};
if (!window.rankloopKeys) {  // one listener for the page, in the capture phase: before a focused checkbox sees Enter
  window.rankloopKeys = true;
  document.addEventListener('keydown', (e) => window.rankloopKey && window.rankloopKey(e), true);
}
"""

CSS = """
.rl-summary { margin: 4px 0 10px; min-height: 1.6em; }
.rl-summary .rl-order { font-size: 1.15em; font-weight: 600; letter-spacing: 0.04em; }
.rl-summary button.rl-clear { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-cards { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr)); }
.rl-stacked .rl-cards { grid-template-columns: 1fr; }
.rl-summary button.rl-layout { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; float: right; }
.rl-head[draggable="true"] { cursor: grab; }
.rl-grip { color: var(--body-text-color-subdued, #999); }
.rl-card { border: 2px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px; cursor: pointer;
  min-width: 0; background: var(--background-fill-primary); }
.rl-card:hover { border-color: var(--color-accent-soft, #999); }
.rl-card.rl-ranked { border-color: var(--color-accent, #f97316); }
.rl-card.rl-flagged { opacity: 0.65; border-style: dashed; }
.rl-head { display: flex; align-items: center; gap: 8px; margin-bottom: 6px; }
.rl-head select { margin-left: auto; max-width: 45%; font-size: 0.9em; }
.rl-badge { display: inline-flex; align-items: center; justify-content: center; min-width: 1.9em; height: 1.9em;
  border-radius: 999px; border: 1px solid var(--border-color-primary); font-weight: 700; }
.rl-ranked .rl-badge { background: var(--color-accent, #f97316); color: white; border-color: transparent; }
.rl-body { overflow-wrap: anywhere; }
.rl-body pre { overflow-x: auto; max-width: 100%; }
.rl-cut { margin-top: 4px; font-size: 0.85em; font-style: italic; color: var(--body-text-color-subdued, #777); }
.rl-body table { display: block; overflow-x: auto; }
/* Gradio's container hides overflow, which makes it the sticky bar's scroll box; clip keeps the page scrolling */
.gradio-container { overflow: clip !important; }
#action-bar { position: sticky; bottom: 0; z-index: 5; background: var(--background-fill-primary);
  border-top: 1px solid var(--border-color-primary); padding: 6px 0; }
@media (max-width: 640px) {  /* phones: the bar's buttons share rows instead of one row each */
  #action-bar .row { flex-direction: row !important; flex-wrap: wrap !important; gap: 6px !important; }
  #action-bar .row > * { min-width: 0 !important; flex: 1 1 28% !important; }
  #action-bar .row > #comment { flex: 1 1 55% !important; }
  #action-bar .row > #none-acceptable { flex: 1 1 35% !important; }
  #action-bar button { padding: 4px 6px !important; }
  #action-bar #comment label > span { display: none; }
}
"""


def ranker_value(
    token: str | None,
    answers: list[str] | None,
    ranks: list[int | None] | None = None,
    flags: list[str | None] | None = None,
) -> dict[str, Any]:
    """The widget's value for a set on screen (answers as HTML, in display order), with nothing chosen yet or
    with `ranks` and `flags` (by display position: a submission taken back to change)."""
    if not token or not answers:
        return dict(EMPTY)
    n = len(answers)
    return {"token": token, "answers": answers, "ranks": ranks or [None] * n, "flags": flags or [None] * n}


def page_token(value: Any) -> str:
    """The lease token the page sent; '' when the page shows no set. RankingRejected when the value is not the
    widget's."""
    if not isinstance(value, dict):
        raise RankingRejected("the page sent no ranking; reload the page")
    token = value.get("token") or ""
    if not isinstance(token, str):
        raise RankingRejected("the page's set is not a lease token; reload the page")
    return token


def read_page(value: Any, none_acceptable: bool, comment: str) -> PageChoices:
    """The choices in the widget's value, by display position; RankingRejected says what is malformed."""
    if not isinstance(value, dict):
        raise RankingRejected("the page sent no ranking; reload the page")
    ranks, flags = value.get("ranks") or [], value.get("flags") or []
    if not isinstance(ranks, list) or not isinstance(flags, list):
        raise RankingRejected("ranks and flags must be lists, one entry per answer")
    if len(ranks) > MAX_ANSWERS or len(flags) > MAX_ANSWERS:
        raise RankingRejected(f"a set has at most {MAX_ANSWERS} answers")
    flags = [*flags, *[None] * (len(ranks) - len(flags))]
    ranks = [*ranks, *[None] * (len(flags) - len(ranks))]
    return read_choices(ranks, flags, none_acceptable, comment)


def read_choices(
    ranks: list[Any], flags: list[Any], none_acceptable: bool, comment: str, *, skipped: bool = False
) -> PageChoices:
    """Ranks (whole numbers from 1, None = unranked) and flags (a reason from FLAG_REASONS, None = not flagged)
    by display position, checked one by one."""
    parsed_ranks: list[int | None] = []
    parsed_flags: list[str | None] = []
    for i, (rank, flag) in enumerate(zip(ranks, flags, strict=True)):
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise RankingRejected(f"answer {i + 1}: rank {str(rank)[:20]!r} is not a whole number from 1")
        if flag not in (None, "") and flag not in FLAG_REASONS:
            raise RankingRejected(
                f"answer {i + 1}: unknown flag {str(flag)[:30]!r}; use one of {', '.join(FLAG_REASONS)}"
            )
        if rank is not None and flag:
            raise RankingRejected(f"answer {i + 1} is both ranked and flagged: choose one")
        parsed_ranks.append(rank)
        parsed_flags.append(flag or None)
    return PageChoices(
        ranks=parsed_ranks,
        flags=parsed_flags,
        none_acceptable=bool(none_acceptable),
        comment=comment if isinstance(comment, str) else "",
        skipped=skipped,
    )
