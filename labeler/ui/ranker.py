"""The ranking widget: one `gr.HTML` component that shows a set's answers and holds the labeler's ranking.

Click answers (or press their numbers) from best to worst: each gets the next rank. Shift+click, or `=` before
a number, gives the same rank as the last one (a tie); clicking a ranked answer takes its rank back, and
Backspace undoes the last one. Dragging an answer's header onto another answer ranks it just above that one
(onto an unranked answer: last). "Layout" switches between side by side and one under another (remembered by
the browser). Each answer has a flag menu; a flagged answer is not ranked. A summary line
reads the order back ("2 > 1 = 4 > 3"). "Edit" on an answer opens its text to rewrite (the edit ranks just
above that answer, labeler/store/store.py); "Write your own answer" adds one (with "none acceptable", the set's one
good answer); what was typed is kept when the box loses focus, with the seconds spent in it. Enter submits and S skips (`#submit-btn`, `#skip-btn`, outside the
widget); Enter never toggles a focused checkbox. Where a judge's ranking is suggested (Admin > Judges), a line shows
its order and "Accept" (or A) makes it the labeler's, to submit or change.

Its value is a JSON object, the same in both directions:

    {"token": "9f...", "answers": ["<p>...</p>", ...], "sources": ["...", ...], "ranks": [2, 1, null, 1],
     "flags": [null, null, "harmful", null], "edits": [null, "rewritten", null, null], "edit_seconds": [...],
     "written": null, "written_seconds": null, "editing": null}

The server sends the token, the answers (HTML it rendered itself, `labeler.ui.render.content_html`) and empty
choices; the page sends it back with the choices filled in. Only the token and the choices are read back
(`read_page`); the answers and their plain texts (`sources`, what an editor starts from) the page sends are
ignored. A labeler's own text is shown escaped (`esc`), never as HTML. One component instead of a column, a text, a rank radio
and a flag radio per answer: a submit has three inputs and seven outputs rather than 19 and 39, and Gradio's
per-component work was the larger part of a submit's server time.

The answers' HTML is placed with JS template expressions (`${...}`), never with Handlebars (`{{...}}`): Gradio
runs Handlebars first and then evaluates the result as a JS template literal, so text substituted by Handlebars
would be read as code.
"""

from __future__ import annotations

from typing import Any

from labeler.store.edits import MAX_EDIT_CHARS  # checked again by the store
from labeler.store.store import PageChoices, RankingRejected
from labeler.store.tables import FLAG_REASONS

MAX_ANSWERS = 16  # a page may not send choices for more answers than this

EMPTY: dict[str, Any] = {"token": "", "answers": [], "ranks": [], "flags": []}

TEMPLATE = """
<div class="rl-ranker" data-token="${value && value.token ? value.token : ''}">
${(value && value.answers && value.answers.length) ? `
  <div class="rl-summary" aria-live="polite">${(() => {
    const ranks = value.ranks || [], flags = value.flags || [];
    const orderOf = (rs) => [...new Set(rs.filter(r => r != null))].sort((a, b) => a - b)
      .map(l => rs.map((r, i) => r === l ? i + 1 : null).filter(x => x).join(' = ')).join(' &gt; ');
    const order = orderOf(ranks);
    const flagged = flags.map((f, i) => f ? `${i + 1} (${f.replace('_', ' ')})` : null).filter(x => x);
    const left = value.answers.length - ranks.filter(r => r != null).length - flagged.length;
    const hint = orderOf(value.suggested || []);
    const who = String(value.suggested_by || 'a judge').replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c]);
    const suggestion = hint && !order ? `<div class="rl-suggested">Suggested by ${who}: <span class="rl-order">${hint}</span> <button type="button" class="rl-accept" title="take the suggested order as yours; change it after if you disagree">Accept (A)</button></div>` : '';
    return suggestion + (order ? `<b>Your order:</b> <span class="rl-order">${order}</span>` : `Click the answers from best to worst (or press their numbers). Shift+click or <kbd>=</kbd> ties with the last one.`)
      + (flagged.length ? ` · <b>Flagged:</b> ${flagged.join(', ')}` : '')
      + (left > 0 && order ? ` · ${left} left` : '')
      + (order ? ` <button type="button" class="rl-tie${value.tie_next ? ' rl-on' : ''}" aria-pressed="${value.tie_next ? 'true' : 'false'}" title="the next answer you pick ties with the last one you ranked (or Shift+click, or =)">${value.tie_next ? 'Tie: pick the answer' : '= Tie next'}</button>` : '')
      + (order || flagged.length ? ` <button type="button" class="rl-clear">Clear</button>` : '')
      + (value.written == null && value.editing !== 'new' ? ` <button type="button" class="rl-write" title="ranks above every answer; with None acceptable ticked, the one good answer">Write your own answer</button>` : '')
      + ` <button type="button" class="rl-layout" title="answers side by side or one under another">Layout</button>`;
  })()}</div>
  <div class="rl-cards">
  ${value.answers.map((answer, i) => {
    const rank = (value.ranks || [])[i], flag = (value.flags || [])[i];
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c]);
    const edit = (value.edits || [])[i], source = (value.sources || [])[i] || '';
    const editor = value.editing === i ? `<div class="rl-editor-box"><textarea class="rl-editor" data-i="${i}" rows="6" maxlength="${value.max_edit || 4000}" aria-label="Your edit of answer ${i + 1}">${esc(edit != null ? edit : source)}</textarea>
        <button type="button" class="rl-edit-done" data-i="${i}">Done</button> <button type="button" class="rl-edit-remove" data-i="${i}">Remove edit</button></div>` : '';
    const edited = edit != null && value.editing !== i ? `<div class="rl-edited"><b>Your edit</b> (ranks just above this answer)<div class="rl-edit-text">${esc(edit)}</div></div>` : '';
    return `<div class="rl-card${rank != null ? ' rl-ranked' : ''}${flag ? ' rl-flagged' : ''}" id="answer-${i}" data-i="${i}" tabindex="0">
      <div class="rl-head" draggable="true" title="drag onto another answer to rank this one just above it">
        <span class="rl-grip" aria-hidden="true">⠿</span>
        <span class="rl-badge" title="rank">${rank != null ? rank : (flag ? '⚑' : '–')}</span>
        <b>Answer ${i + 1}</b>
        <button type="button" class="rl-edit" data-i="${i}" title="rewrite this answer: your edit ranks just above it">${edit != null ? 'Edit ✎' : 'Edit'}</button>
        <select class="rl-flag" data-i="${i}" aria-label="Flag answer ${i + 1}">
          <option value="">Flag…</option>
          ${reasons.map(r => `<option value="${r}"${flag === r ? ' selected' : ''}>${r.replace('_', ' ')}</option>`).join('')}
        </select>
      </div>
      <div class="rl-body">${answer}</div>${edited}${editor}
    </div>`;
  }).join('')}
  ${(value.written != null || value.editing === 'new') ? (() => {
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c]);
    return `<div class="rl-card rl-written" id="answer-written"><div class="rl-head"><b>Your answer</b> <span class="rl-note">ranks above every answer</span></div>
      ${value.editing === 'new' ? `<div class="rl-editor-box"><textarea class="rl-editor" data-i="new" rows="6" maxlength="${value.max_edit || 4000}" aria-label="Your own answer">${esc(value.written || '')}</textarea>
        <button type="button" class="rl-edit-done" data-i="new">Done</button> <button type="button" class="rl-edit-remove" data-i="new">Remove</button></div>`
      : `<div class="rl-edit-text">${esc(value.written)}</div> <button type="button" class="rl-edit" data-i="new">Edit</button>`}</div>`;
  })() : ''}
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
  props.value = {...current(), ranks, flags, tie_next: false};
  setTimeout(syncMenus, 0);
}
let editStart = null;  // when the open editor got focus (its seconds are added when it loses it)
function keepEdit(key, text) {  // an edit (key: answer index, or 'new') with the seconds spent so far
  const v = current(), spent = editStart ? (Date.now() - editStart) / 1000 : 0;
  editStart = null;
  if (key === 'new') {
    props.value = {...v, written: text && text.trim() ? text : null, written_seconds: (v.written_seconds || 0) + spent};
    return;
  }
  const edits = [...(v.edits || v.answers.map(() => null))], seconds = [...(v.edit_seconds || v.answers.map(() => null))];
  const source = (v.sources || [])[key] || '';
  edits[key] = text && text.trim() && text.trim() !== source.trim() ? text : null;
  seconds[key] = edits[key] == null ? null : (seconds[key] || 0) + spent;
  props.value = {...v, edits, edit_seconds: seconds};
}
function openEditor(key) {
  props.value = {...current(), editing: key};
  setTimeout(() => { const t = element.querySelector('textarea.rl-editor'); if (t) t.focus(); }, 0);
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
function accept() {  // the suggested order becomes the labeler's (flags cleared), to keep or change
  const v = current();
  if (!v.suggested || !v.suggested.some(r => r != null)) return;
  const ranks = v.answers.map((_, i) => v.suggested[i] != null ? v.suggested[i] : null);
  stack = levelsOf(ranks).flat();
  put(ranks, v.answers.map(() => null));
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

element.addEventListener('focusin', (e) => {
  if (e.target.closest && e.target.closest('textarea.rl-editor')) editStart = Date.now();
});
const keyOf = (b) => (b.dataset.i === 'new' ? 'new' : +b.dataset.i);
function closeEditor(button) {  // Done keeps the text in the box; Remove drops the edit
  const box = element.querySelector('textarea.rl-editor');
  keepEdit(keyOf(button), button.classList.contains('rl-edit-remove') || !box ? null : box.value);
  props.value = {...current(), editing: null};
}
let mouseClosed = false;  // Done / Remove act on mousedown, before the box's blur redraws the widget
element.addEventListener('mousedown', (e) => {
  const button = e.target.closest && e.target.closest('.rl-edit-done, .rl-edit-remove');
  mouseClosed = false;  // each press starts a click of its own
  if (!button) return;
  e.preventDefault();
  mouseClosed = true;
  closeEditor(button);
});
element.addEventListener('click', (e) => {
  const t = e.target;
  if (mouseClosed) { mouseClosed = false; return; }
  const closing = t.closest('.rl-edit-done, .rl-edit-remove');
  if (closing) { closeEditor(closing); return; }  // from the keyboard
  if (t.closest('.rl-edit')) { openEditor(keyOf(t.closest('.rl-edit'))); return; }
  if (t.closest('.rl-write')) { openEditor('new'); return; }
  if (t.closest('.rl-accept')) { accept(); return; }
  if (t.closest('.rl-tie')) { props.value = {...current(), tie_next: !current().tie_next}; return; }
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
  if (t.closest('select, option, a, input, button, textarea, .rl-editor-box, .rl-written')) return;
  if (String(window.getSelection ? window.getSelection() : '').length > 0) return;  // selecting text
  const card = t.closest('.rl-card');
  if (card) pick(+card.dataset.i, e.shiftKey || !!current().tie_next);
});
element.addEventListener('change', (e) => {
  const s = e.target.closest('select.rl-flag');
  if (s) {
    flag(+s.dataset.i, s.value);
    s.blur();  // the reason is picked: the keys rank, flag and submit again
  }
  const box = e.target.closest('textarea.rl-editor');  // the text is kept as the box loses focus
  if (box) keepEdit(box.dataset.i === 'new' ? 'new' : +box.dataset.i, box.value);
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

function flagKey(i) {  // F then a number: unflag a flagged answer, else open its menu to pick the reason
  if (i >= current().answers.length) return;
  if ((current().flags || [])[i]) { flag(i, null); return; }
  const menu = element.querySelector(`select.rl-flag[data-i="${i}"]`);
  if (!menu) return;
  menu.focus();
  try { menu.showPicker(); } catch (err) { /* older browsers: the focused menu takes arrow keys */ }
}

window.rankloopKey = (e) => {
  const t = e.target;
  if (!element.isConnected || !current().token || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === 'Enter' && !e.shiftKey && t && t.closest && t.closest('#comment')) {  // Shift+Enter: a new line
    e.preventDefault(); e.stopPropagation();
    const submit = document.querySelector('#submit-btn');
    if (submit) submit.click();
    return;
  }
  if (t && (t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || (t.tagName === 'INPUT' && t.type !== 'checkbox' && t.type !== 'radio'))) return;
  if (e.key === 'Enter') {
    e.preventDefault(); e.stopPropagation();
    const submit = document.querySelector('#submit-btn');
    if (submit) submit.click();
  } else if (/^[1-9]$/.test(e.key)) {
    e.preventDefault();
    if (pending === 'f') flagKey(+e.key - 1);
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
  } else if ((e.key === 'a' || e.key === 'A') && current().suggested) { e.preventDefault(); accept(); }
  else if (e.key === 'Escape') { pending = null; }
};
if (!window.rankloopKeys) {  // one listener for the page, in the capture phase: before a focused checkbox sees Enter
  window.rankloopKeys = true;
  document.addEventListener('keydown', (e) => window.rankloopKey && window.rankloopKey(e), true);
  document.addEventListener('input', (e) => {  // the comment's length against its limit, as it is typed
    const box = e.target && e.target.closest && e.target.closest('#comment');
    if (!box) return;
    let count = box.querySelector('.rl-count');
    if (!count) { count = document.createElement('div'); count.className = 'rl-count'; box.appendChild(count); }
    const limit = e.target.maxLength > 0 ? e.target.maxLength : 2000;
    count.textContent = `${e.target.value.length} / ${limit} characters`;
  }, true);
}
"""

CSS = """
.rl-summary { margin: 4px 0 10px; min-height: 1.6em; }
#guidelines { max-height: 45vh; overflow-y: auto; }
.rl-below { font-weight: 600; margin: 0 0 6px; }
.rl-count { font-size: 0.85em; color: var(--body-text-color-subdued, #666); text-align: right; }
.rl-summary .rl-order { font-size: 1.15em; font-weight: 600; letter-spacing: 0.04em; }
.rl-suggested { margin-bottom: 4px; color: var(--body-text-color-subdued, #666); }
.rl-summary button.rl-accept { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-summary button.rl-clear { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-cards { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr)); }
.rl-stacked .rl-cards { grid-template-columns: 1fr; }
.rl-summary button.rl-layout { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; float: right; }
.rl-summary::after { content: ""; display: block; clear: both; }  /* the floated button never narrows the cards */
.rl-summary button.rl-tie { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-summary button.rl-tie.rl-on { background: var(--color-accent, #f97316); color: white; }
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
.rl-head button.rl-edit { font-size: 0.85em; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-summary button.rl-write { margin-left: 8px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-editor-box textarea { width: 100%; box-sizing: border-box; font: inherit; margin-top: 6px; }
.rl-editor-box button { margin-top: 4px; padding: 0 8px; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; }
.rl-edited { margin-top: 8px; padding: 6px 8px; border-left: 3px solid var(--color-accent, #f97316);
  background: var(--background-fill-secondary); }
.rl-edit-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.rl-written { cursor: default; border-style: solid; border-color: var(--color-accent, #f97316); margin-top: 12px; }
.rl-note { font-size: 0.85em; color: var(--body-text-color-subdued, #777); }
/* Gradio's container hides overflow, which makes it the sticky bar's scroll box; clip keeps the page scrolling */
.gradio-container { overflow: clip !important; }
#action-bar { position: sticky; bottom: 0; z-index: 5; background: var(--background-fill-primary);
  border-top: 1px solid var(--border-color-primary); padding: 6px 0; }
@media (max-width: 640px) {  /* phones: one column, a short bar, the order on screen while ranking */
  #action-bar { padding: 2px 0; }
  #action-bar .row { flex-direction: row !important; flex-wrap: wrap !important; gap: 4px !important; }
  #action-bar .row > * { min-width: 0 !important; flex: 1 1 30% !important; }
  #action-bar .row > .form { flex: 1 1 100% !important; flex-wrap: nowrap !important; }  /* tick box + comment */
  #action-bar .form > #comment { flex: 1 1 0 !important; }
  #action-bar .form > #none-acceptable { flex: 0 0 auto !important; width: auto !important; }
  #action-bar button { padding: 2px 4px !important; min-height: 36px !important; font-size: 0.9em !important; }
  #action-bar #comment label > span { display: none; }
  #action-bar #comment textarea { max-height: 2.4em; min-height: 2.4em; }
  #action-bar #comment textarea::placeholder { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #none-acceptable label { white-space: nowrap; font-size: 0.9em; }
  #none-acceptable label span { overflow: visible !important; text-overflow: clip !important; }
  .rl-cards { grid-template-columns: 1fr !important; }
  .rl-summary { position: sticky; top: 0; z-index: 4; background: var(--background-fill-primary);
    padding: 4px 0; border-bottom: 1px solid var(--border-color-primary); }
  .rl-summary button.rl-layout { display: none; }
  .rl-head { gap: 4px; }
  .rl-head select { max-width: 34%; font-size: 0.8em; padding: 2px !important; }
  .rl-summary button { font-size: 0.8em; padding: 0 6px !important; margin-left: 4px !important; }
  #guidelines { max-height: 22vh; }
  .gradio-container h1 { font-size: 1.4em !important; margin: 0 !important; }
  #whoami { font-size: 0.85em; }
}
"""


def ranker_value(
    token: str | None,
    answers: list[str] | None,
    ranks: list[int | None] | None = None,
    flags: list[str | None] | None = None,
    *,
    sources: list[str] | None = None,
    edits: list[str | None] | None = None,
    written: str | None = None,
    suggested: list[int | None] | None = None,
    suggested_by: str | None = None,
) -> dict[str, Any]:
    """The widget's value for a set on screen (answers as HTML and their plain `sources` for the editor, in
    display order), with nothing chosen yet or with `ranks`, `flags`, `edits` and `written` (by display
    position: a submission taken back to change); `suggested`: a judge's ranking (`suggested_by`) the labeler
    may accept with one key."""
    if not token or not answers:
        return dict(EMPTY)
    n = len(answers)
    return {
        "token": token,
        "answers": answers,
        "sources": sources or [""] * n,
        "ranks": ranks or [None] * n,
        "flags": flags or [None] * n,
        "edits": edits or [None] * n,
        "edit_seconds": [None] * n,
        "written": written,
        "written_seconds": None,
        "editing": None,
        "max_edit": MAX_EDIT_CHARS,
        "suggested": suggested,
        "suggested_by": suggested_by,
    }


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
    choices = read_choices(ranks, flags, none_acceptable, comment)
    choices.edits, choices.edit_seconds = read_edits(value.get("edits"), value.get("edit_seconds"))
    written = value.get("written")
    if written is not None:
        choices.written = edit_text(written, "your own answer")
        choices.written_seconds = seconds_of(value.get("written_seconds"))
    return choices


def edit_text(text: Any, what: str) -> str | None:
    """An edit's text as the page sent it (None: no edit); RankingRejected when it is not text or too long."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise RankingRejected(f"{what}: the edit is not text; reload the page")
    if len(text) > MAX_EDIT_CHARS:
        raise RankingRejected(
            f"{what}: the edit has {len(text)} characters; at most {MAX_EDIT_CHARS} are kept"
        )
    return text


def seconds_of(value: Any) -> float | None:
    """Seconds the page measured (a number from 0), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return float(value)


def read_edits(edits: Any, seconds: Any) -> tuple[list[str | None], list[float | None]]:
    """The labeler's edits and the seconds each took, by display position."""
    edits, seconds = edits or [], seconds or []
    if not isinstance(edits, list) or not isinstance(seconds, list) or len(edits) > MAX_ANSWERS:
        raise RankingRejected(f"edits must be a list of at most {MAX_ANSWERS} texts, one per answer")
    texts = [edit_text(e, f"answer {i + 1}") for i, e in enumerate(edits)]
    spent = [seconds_of(s) for s in seconds[: len(texts)]]
    return texts, [*spent, *[None] * (len(texts) - len(spent))]


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
