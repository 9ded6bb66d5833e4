"""Text shown on pages (prompts, answers, guidelines) rendered as Markdown without raw HTML, and within bounds.

Prompts and answers are text from people and models, never markup: raw HTML outside code is shown as text, so a
prompt cannot carry a form, an input, an image from another server or an event handler. Very long text is folded
and long tables are cut, so one item cannot freeze a labeler's browser (a 2000-row table took 8 s to render).

    gr.Markdown(safe_markdown(text))       # Gradio renders the Markdown (and sanitises it again)
    markdown_html(text)                    # HTML made here, for the ranking widget (labeler/ui/ranker.py)
"""

from __future__ import annotations

import functools
import re

from markdown_it import MarkdownIt

MAX_RENDER_CHARS = 20_000
MAX_TABLE_ROWS = 60
# fenced blocks (closed or running to the end) and inline code spans: left as they are
_CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]*`)", re.DOTALL)
_REMOTE_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*(?:https?:)?//[^)]*\)", re.IGNORECASE)


def safe_markdown(text: str, *, max_chars: int = MAX_RENDER_CHARS, max_rows: int = MAX_TABLE_ROWS) -> str:
    """`text` as Markdown with raw HTML escaped outside code, remote images as their alt text, tables cut after
    `max_rows` rows and the whole folded after `max_chars` characters (with a note saying how much is hidden)."""
    hidden = max(0, len(text) - max_chars)
    shown = _cut_tables(text[:max_chars], max_rows)
    parts = _CODE.split(shown)
    for i in range(0, len(parts), 2):  # even parts are outside code
        parts[i] = _REMOTE_IMAGE.sub(r"[image: \1]", parts[i].replace("&", "&amp;").replace("<", "&lt;"))
    rendered = "".join(parts)
    if hidden:
        rendered += f"\n\n*… {hidden:,} more characters not shown.*"
    return rendered


@functools.cache
def _markdown() -> MarkdownIt:
    # CommonMark with GitHub's tables and strikethrough; html=False shows raw HTML as text, and the link checker
    # refuses javascript:, vbscript:, file: and non-image data: links.
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def markdown_html(text: str) -> str:
    """`safe_markdown(text)` rendered to HTML on the server: no tag, attribute or script from `text` survives,
    only the Markdown's own elements (paragraphs, lists, code, tables, links, local images)."""
    return _markdown().render(safe_markdown(text))


def _cut_tables(text: str, max_rows: int) -> str:
    out: list[str] = []
    run = 0
    dropped = 0
    for line in text.split("\n"):
        if line.lstrip().startswith("|"):
            run += 1
            if run > max_rows:
                dropped += 1
                continue
        else:
            if dropped:
                out.append(f"\n*… {dropped:,} more table rows not shown.*\n")
            run, dropped = 0, 0
        out.append(line)
    if dropped:
        out.append(f"\n*… {dropped:,} more table rows not shown.*")
    return "\n".join(out)
