"""The renderer (labeler/ui/render.py) as sanitisers are tested: random mixes of Markdown and HTML fragments give
only allow-listed tags and attributes and no remote image, plus each way through found by an attacker."""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from labeler.ui.render import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    LINK_REL,
    MAX_TABLE_ROWS,
    content_html,
    conversation_html,
    is_local_image,
    sanitize,
)

FRAGMENTS = [
    '<a id="submit-btn" href="http://127.0.0.1:9/x">',
    "</a>",
    '<input placeholder="re-enter password">',
    '<form action="http://evil/steal">',
    "<script>alert(1)</script>",
    '<img src=x onerror="fetch(1)">',
    '<div class="rl-ranker" data-i="0" style="position:fixed">',
    "<svg><style>",
    "<!--",
    "-->",
    "~~~",
    "```",
    "`",
    "\\`",
    "![a",
    "[b]",
    "](http://evil/x.png)",
    "](//evil/x.png)",
    "](/\\evil/x.png)",
    "](/file/ok.png)",
    "](javascript:alert(1))",
    "[r]: http://evil/i.png",
    "![a][r]",
    "<http://evil/auto>",
    "&lt;b&gt;",
    "&#60;script&#62;",
    "|",
    "---",
    "a | b",
    "\n",
    "\n\n",
    "    ",
    "> ",
    "- ",
    "1. ",
    "*",
    "_",
    "#",
    "word",
    'onclick="x()"',
    "name=login",
]


class Collect(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def start_tags(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Collect()
    parser.feed(fragment)
    parser.close()
    return parser.tags


def assert_inert(out: str) -> None:
    for tag, attrs in start_tags(out):
        assert tag in ALLOWED_TAGS, (tag, out)
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset()) | ({"rel"} if tag == "a" else set())
        assert set(attrs) <= allowed, (tag, attrs, out)
        if tag == "img":
            assert is_local_image(attrs.get("src") or ""), (attrs, out)
        if tag == "a":
            assert attrs.get("rel") == LINK_REL
            href = (attrs.get("href") or "").strip().lower()
            assert not href.startswith(("javascript:", "vbscript:", "data:", "file:")), out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=40))
def test_random_markdown_and_html_render_only_allow_listed_markup(parts):
    assert_inert(content_html("".join(parts)))
    assert_inert(conversation_html([{"role": "user", "content": " ".join(parts)}]))


def test_a_tilde_fence_inside_a_line_is_not_code_and_its_html_stays_text():
    out = content_html(
        'Summarise. ~~~ <a id="submit-btn" href="http://127.0.0.1:9/x"></a>'
        '<input placeholder="re-enter password"> ~~~'
    )
    assert "<a" not in out and "<input" not in out and "&lt;input" in out and "submit-btn" in out


def test_text_after_an_escaped_backtick_is_not_code():
    out = content_html("\\` <a id=x href=//evil>go</a> `")
    assert "<a" not in out and "&lt;a id=x" in out


def test_reference_and_nested_bracket_images_from_elsewhere_become_their_alt_text():
    assert content_html("![a][r]\n\n[r]: http://evil/x.png") == "<p>[image: a]</p>\n"
    out = content_html("![a [b] c](http://evil/x.png) ![p](//evil/p.png) ![q](/\\evil/q.png)")
    assert "<img" not in out.replace('<img src="/%5Cevil/q.png"', "")  # `/\` is percent-encoded: a local path
    assert "[image: a [b] c]" in out and "[image: p]" in out
    assert '<img src="/file/ok.png" alt="ok">' in content_html("![ok](/file/ok.png)")


def test_a_table_is_cut_whatever_the_syntax_of_its_rows():
    bare = "a | b\n--|--\n" + "1 | 2\n" * 500  # rows that do not start with |
    out = content_html(bare)
    assert out.count("<tr>") == MAX_TABLE_ROWS + 1  # the header row and MAX_TABLE_ROWS body rows
    assert "440 more table rows not shown" in out
    assert "more characters not shown" in content_html("x" * 30_000)


def test_links_are_kept_with_rel_and_page_attributes_are_not():
    out = content_html('[site](https://example.org) <b id="x" class="rl-flag">b</b> **bold**')
    assert f'<a href="https://example.org" rel="{LINK_REL}">site</a>' in out
    assert "<strong>bold</strong>" in out and "&lt;b id=" in out  # raw HTML is text
    # the sanitiser alone, given markup (as if the parser ever let some through): page attributes go
    assert (
        sanitize('<p id="x" class="rl-flag" data-i="1" style="x" onclick="y()">t</p><input name=n>')
        == "<p>t</p>"
    )
    assert "[x](javascript:alert(1))" in content_html("[x](javascript:alert(1))")  # not a link at all


def test_inline_text_loses_only_a_single_paragraphs_wrapper():
    from labeler.ui.render import inline_html

    assert inline_html("Prefer **sources**.") == "Prefer <strong>sources</strong>."
    assert inline_html("one\n\ntwo").count("<p>") == 2
    assert "<img" not in inline_html("![x](http://evil/x.png)")


def test_a_conversations_earlier_turns_are_folded_and_its_last_user_message_is_open():
    messages = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "<script>alert(1)</script>Blue."},
        {"role": "user", "content": "Now say **why**."},
    ]
    shown = conversation_html(messages)
    folded, _, last = shown.partition("</details>")
    assert folded.startswith('<details class="rl-earlier"><summary>Earlier turns (2)</summary>')
    assert "Name a colour." in folded and "Blue." in folded and "<strong>why</strong>" in last
    assert_inert(folded.split("</summary>", 1)[1] + last)  # the fold is the page's; everything in it is inert
    assert "<details" not in conversation_html(messages[:1])  # one turn: nothing to fold
