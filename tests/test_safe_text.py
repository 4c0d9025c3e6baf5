"""tiller.trainer.steering.safe_text: untrusted text made inert for Markdown (by parsing) and for terminals.

Each output is parsed again with a CommonMark parser: whatever the input, nothing in it
may load (image, raw HTML), link anywhere but http(s), or (for inline text) format at all.
The browser test (test_untrusted_browser.py) checks the same with Streamlit's own renderer.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings, strategies as st
from markdown_it import MarkdownIt

from tiller.trainer.steering.safe_text import (
    markdown_code, markdown_code_block, markdown_inline, safe_markdown, terminal_json, terminal_text,
)

GFM = MarkdownIt("commonmark").enable(["table", "strikethrough"])
GFM.validateLink = lambda url: True  # as browsers' renderers may: a data: or javascript: link is a link

# Each of these once made, or could make, a browser fetch or a link to a live scheme.
BYPASSES = [
    "```\nfenced\n~~~\n```\n![](http://127.0.0.1:9/mismatched-fence)",  # a ~~~ does not close a ``` fence
    "~~~\n```\n~~~\n![](http://127.0.0.1:9/after-tilde)",
    "````\n```\n````\n![](http://127.0.0.1:9/long-fence)",
    "![x][1]\n\n[1]: http://127.0.0.1:9/reference-image",
    "![x]\n\n[x]: <http://127.0.0.1:9/angle-reference> 'title'",
    "<img src=http://127.0.0.1:9/html-img>",
    "text <img src='http://127.0.0.1:9/inline-img'> more",
    "<div>\n<img src=http://127.0.0.1:9/block-img>\n</div>",
    "<svg onload=alert(1)><image href=http://127.0.0.1:9/svg /></svg>",
    "<style>@import 'http://127.0.0.1:9/css';</style>",
    "<http://127.0.0.1:9/autolink>",
    "<data:text/html,<script>alert(1)</script>>",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[png](data:image/png;base64,iVBORw0KGgo=)",
    "[js](javascript:alert(1)) [JS](JAVASCRIPT:alert(1)) [ent](java&#x73;cript:alert(1))",
    "[file](file:///etc/passwd) [rel](//127.0.0.1:9/protocol-relative) [here](relative/path)",
    "[![nested](http://127.0.0.1:9/nested-img)](http://example.com)",
    "- item\n\n  ![](http://127.0.0.1:9/in-list)\n\n  > ![](http://127.0.0.1:9/in-quote)",
    "| a | b |\n|---|---|\n| ![](http://127.0.0.1:9/in-table) | <img src=http://127.0.0.1:9/t> |",
    "title\n===\n![](http://127.0.0.1:9/setext)",
    "    indented code\n![](http://127.0.0.1:9/after-indented)",
]
# Inert as they come, but a careless rewrite would make them live: decoded entities and
# escapes written back raw, Streamlit's own syntax (colours, icons, KaTeX).
TRAPS = [
    "\\![x](http://127.0.0.1:9/escaped-bang)",  # an escaped ! then a link: written back together, an image
    "&#33;[x](http://127.0.0.1:9/entity-bang) &excl;[y](http://127.0.0.1:9/named-entity-bang)",
    "&lt;img src=http://127.0.0.1:9/entity&gt; &#60;img&#62;",
    "\\<img src=http://127.0.0.1:9/escaped-lt> \\!\\[x\\](http://127.0.0.1:9/escaped-bang)",
    ":red[colour] :material/home: $\\href{http://127.0.0.1:9/katex}{x}$",
    "`` ` `` and ```` ``` ````",
]


def dangers(markdown: str) -> list[str]:
    """Whatever in ``markdown``, parsed, would load something, run, or link to a scheme not http(s)."""
    found = []
    for token in GFM.parse(markdown):
        for t in [token, *(token.children or [])]:
            if t.type in ("image", "html_inline", "html_block"):
                found.append(f"{t.type}: {t.content}")
            if t.type == "link_open":
                href = str(t.attrs.get("href", ""))
                if t.markup == "autolink" or not re.match(r"https?://[^/]", href):
                    found.append(f"link: {href}")
    return found


@pytest.mark.parametrize("text", BYPASSES + TRAPS)
def test_known_bypasses_come_out_inert(text):
    assert dangers(text) or text in TRAPS
    out = safe_markdown(text)
    assert dangers(out) == [], out
    assert "](data:" not in out and "](javascript:" not in out.lower()


def test_formatting_survives():
    text = ("# Analysis\n\nThe loss **plateaus** after *epoch 5*; try `lr=1e-3`.\n\n1. lower lr\n2. more epochs\n"
            "   - nested\n\n```python\nx = 1\n```\n\n> a quote\n\n| key | value |\n|:--|--:|\n| lr | 0.1 |\n\n"
            "[docs](https://example.com/a_(b))")
    out = safe_markdown(text, heading_shift=2)
    html = GFM.render(out)
    for tag in ("<h3>Analysis</h3>", "<strong>plateaus</strong>", "<em>epoch 5</em>", "<code>lr=1e-3</code>",
                "<ol>", "<li>nested</li>", '<code class="language-python">x = 1', "<blockquote>", "<table>",
                '<a href="https://example.com/a_%28b%29">docs</a>'):
        assert tag in html, html


def test_images_and_html_read_as_text():
    out = safe_markdown("see ![chart](http://x/p.png) and <b>bold</b>")
    assert GFM.render(out) == "<p>see [image: chart] and &lt;b&gt;bold&lt;/b&gt;</p>\n"


def test_code_keeps_any_backticks():
    assert GFM.render(markdown_code("a``b")).strip() == "<p><code>a``b</code></p>"
    assert GFM.render(markdown_code("`x`")).strip() == "<p><code>`x`</code></p>"
    block = "\n".join(markdown_code_block("```\n![](http://x)\n````"))
    assert GFM.render(block) == "<pre><code>```\n![](http://x)\n````\n</code></pre>\n"


# Pieces that Markdown gives a meaning to, mixed at random with plain text.
PIECES = ["```", "~~~", "`", "![", "[", "]", "(", ")", "]:", "<", ">", "img src=", "http://127.0.0.1:9/h",
          "data:text/html,x", "javascript:x", "\n", "\n\n", "    ", "- ", "1. ", "> ", "|", "---", "===", "*",
          "_", "&", "&#60;", "#", "\\", "<http://e/a>", "![x](http://e/i)", "\n[1]: http://e/r\n", "![x][1]",
          "<img src=x>", "<div>", ":red[", "$", "~~"]
markdownish = st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(markdownish)
def test_no_input_makes_anything_that_loads_or_links_elsewhere(text):
    out = safe_markdown(text)
    assert dangers(out) == [], out
    assert dangers(safe_markdown(out, heading_shift=2)) == []


@settings(max_examples=400, deadline=None)
@given(markdownish)
def test_inline_text_never_formats(text):
    """A name or message placed in our Markdown parses to paragraphs of text and line breaks only."""
    for token in GFM.parse(markdown_inline(text)):
        assert token.type in ("paragraph_open", "paragraph_close", "inline"), (token.type, markdown_inline(text))
        for child in token.children or []:
            assert child.type in ("text", "softbreak"), (child.type, markdown_inline(text))


# Every control character a terminal acts on: C0 but tab and newline, DEL, C1, bidi controls.
TERMINAL_ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("text, shown", [
    ("run\x1b[2J\x1b[H", "run"),                      # clear the screen, cursor home
    ("a\x1b]0;pwned\x07b", "ab"),                       # set the window title
    ("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # hyperlink
    ("shown\x1b[8mhidden\x1b[0m", "shownhidden"),       # hidden text shows
    ("fake\roverwrite", "fakeoverwrite"),
    ("\x9b2Jx\x9d0;t\x9cy", "xy"),                      # the same as C1 characters
    ("abc\u202edcba\u2066x\u2069", "abcdcbax"),         # bidi overrides
    ("bell\x07 back\x08space", "bell backspace"),
    ("tab\tand\nline", "tab\tand\nline"),
])
def test_terminal_text_removes_what_a_terminal_would_act_on(text, shown):
    assert terminal_text(text) == shown


def test_terminal_text_single_line():
    assert terminal_text("name\nfake line", single_line=True) == "name fake line"


@given(st.text())
def test_terminal_text_leaves_nothing_active(text):
    assert not TERMINAL_ACTIVE.search(terminal_text(text))


@given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=10))
def test_terminal_json_is_the_same_data_and_inert(value):
    text = terminal_json(value, indent=2)
    assert json.loads(text) == value
    assert not TERMINAL_ACTIVE.search(text)
