"""Text shown on pages (prompts, answers, guidelines, samples) rendered to inert HTML on the server, within bounds.

Prompts and answers are text from people and models, never markup. They are parsed once, here, by a CommonMark
parser with raw HTML off (markdown-it-py: `<tag>` stays text), and what it writes goes through an allow-list
sanitiser (nh3): only the tags and attributes in ALLOWED_TAGS and ALLOWED_ATTRIBUTES survive, so no `id`, `name`,
`class`, `style`, `form`, `input` or event attribute reaches the page, and the page's own scripts can find their
elements (`#submit-btn`, `.rl-ranker`, `data-i`) knowing no rendered content carries those. Links get
`rel="noopener noreferrer nofollow"`; an image from anywhere but this origin becomes its alt text, whether written
inline, by reference or with nested brackets (the parser resolves them all before the check). Very long text is
folded, and a table keeps its first `max_rows` body rows whatever the syntax of its rows (a 2000-row table took
8 s to render). The browser gets HTML in a `gr.HTML` component and never Markdown to parse a second time.

    content_html(text)                          # one text: "<p>...</p>"
    conversation_html(messages)                 # a prompt's turns, each named
    gr.HTML(page(content_html(text)))           # how a page shows it, styled like Markdown
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Mapping

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

MAX_RENDER_CHARS = 20_000
MAX_TABLE_ROWS = 60
ALLOWED_TAGS = frozenset(
    {"p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li", "hr", "a", "img"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}
)
ALLOWED_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "title"}),
    "ol": frozenset({"start"}),
}
LINK_REL = "noopener noreferrer nofollow"
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# an image on this origin: one absolute path (not `//host`, not `/\host`, which browsers read as another host)
_LOCAL_IMAGE = re.compile(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/-]*", re.ASCII)
WRAPPER = '<div class="prose rl-content">{}</div>'


@functools.cache
def _markdown() -> MarkdownIt:
    # CommonMark with GitHub's tables and strikethrough; html=False keeps raw HTML as text, and the parser's own
    # link check refuses javascript:, vbscript:, file: and non-image data: links.
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def is_local_image(src: str) -> bool:
    """Whether an image `src` is a path on this origin (so showing it asks no other server for anything)."""
    return _LOCAL_IMAGE.fullmatch(src) is not None


def _filter_attribute(element: str, attribute: str, value: str) -> str | None:
    if element == "img" and attribute == "src" and not is_local_image(value):
        return None
    return value


def sanitize(fragment: str) -> str:
    """`fragment` with every tag and attribute outside the allow-lists removed (nh3), comments dropped, links
    given LINK_REL and URLs held to URL_SCHEMES (or relative)."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_filter_attribute,
        link_rel=LINK_REL,
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
    )


def content_html(text: str, *, max_chars: int = MAX_RENDER_CHARS, max_rows: int = MAX_TABLE_ROWS) -> str:
    """`text` (Markdown) as sanitised HTML: remote images as their alt text, each table cut after `max_rows` body
    rows and the whole folded after `max_chars` characters, each with a note saying how much is hidden."""
    hidden = max(0, len(text) - max_chars)
    md = _markdown()
    env: dict = {}
    tokens = _cut_tables(_local_images_only(md.parse(text[:max_chars], env)), max_rows)
    rendered = md.renderer.render(tokens, md.options, env)
    if hidden:
        rendered += f"<p><em>… {hidden:,} more characters not shown.</em></p>"
    return sanitize(rendered)


def inline_html(text: str, *, max_chars: int = MAX_RENDER_CHARS) -> str:
    """`content_html` for text shown inside a line (a list item): one paragraph loses its `<p>` wrapper."""
    out = content_html(text, max_chars=max_chars).strip()
    inner = out.removeprefix("<p>").removesuffix("</p>")
    return inner if out.startswith("<p>") and "<p>" not in inner and "</p>" not in inner else out


def conversation_html(messages: Iterable[Mapping], *, max_chars: int = MAX_RENDER_CHARS) -> str:
    """A prompt's turns, each under its role's name (a system turn in italics), separated by rules. In a
    conversation the turns before the last user message are folded ("Earlier turns"), that message open."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    blocks = []
    turns = list(messages)
    for m in turns:
        role = str(m.get("role", ""))
        content = content_html(str(m.get("content", "")), max_chars=max_chars)
        body = f"<em>{content}</em>" if role == "system" else content
        blocks.append(f"<p><strong>{html.escape(names.get(role, role))}:</strong></p>{body}")
    users = [i for i, m in enumerate(turns) if m.get("role") == "user"]
    if len(users) < 2:
        return "<hr>".join(blocks)
    last = users[-1]
    earlier = "<hr>".join(blocks[:last])
    folded = f'<details class="rl-earlier"><summary>Earlier turns ({last})</summary>{earlier}</details>'
    return folded + "<hr>" + "<hr>".join(blocks[last:])


def page(*fragments: str) -> str:
    """Sanitised fragments (and markup built here with escaped text) as one block styled like Markdown."""
    return WRAPPER.format("".join(fragments))


def text_html(text: str) -> str:
    """Plain text (a name, a status line) as escaped HTML, its line breaks kept."""
    return html.escape(text).replace("\n", "<br>")


def _local_images_only(tokens: list[Token]) -> list[Token]:
    """Images whose source is not on this origin become the text "[image: alt]" (the alt text the parser read)."""
    for block in tokens:
        children = block.children or []
        for i, child in enumerate(children):
            if child.type == "image" and not is_local_image(str(child.attrGet("src") or "")):
                alt = "".join(c.content for c in child.children or []) or child.content
                children[i] = Token("text", "", 0, content=f"[image: {alt}]")
    return tokens


def _cut_tables(tokens: list[Token], max_rows: int) -> list[Token]:
    """Each table's body rows after the first `max_rows` dropped, and a note after the table saying how many."""
    out: list[Token] = []
    rows, dropped, in_body, skipping = 0, 0, False, False
    for token in tokens:
        if token.type in ("tbody_open", "tbody_close"):
            in_body, rows = token.type == "tbody_open", 0
        elif token.type == "tr_open" and in_body:
            rows += 1
            skipping = rows > max_rows
            dropped += skipping
        if not skipping:
            out.append(token)
        if token.type == "tr_close":
            skipping = False
        elif token.type == "table_close" and dropped:
            note = f"<p><em>… {dropped:,} more table rows not shown.</em></p>"
            out.append(Token("html_block", "", 0, content=note))
            dropped = 0
    return out
