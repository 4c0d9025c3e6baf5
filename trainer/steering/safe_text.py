"""Untrusted text (advisor output, reasons, run/class names, event messages) made inert.

Three outputs, three helpers:

- ``safe_markdown``: Markdown that may keep its formatting (an advisor's analysis, a
  change report) is *parsed* with a CommonMark parser (markdown-it-py, the parser rich
  already brings) and written out again from its tokens. Only paragraphs, headings,
  lists, quotes, code, tables, emphasis and http(s) links are written back; every piece
  of text is escaped. Images, raw HTML, autolinks and links to other schemes (``data:``,
  ``javascript:``, ``file:``…) come out as plain text, so the result makes no browser or
  Markdown viewer load or run anything, whatever tricks the input plays (mismatched
  fences, reference-style images, entities).
- ``markdown_inline``: a name or message placed inside Markdown of our own, shown as typed.
- ``terminal_text``: text printed to a terminal, without the control characters and
  escape sequences that would clear the screen, set the title, hide or overwrite text,
  or reorder it (bidi overrides).

Torch-free and Streamlit-free: the dashboard, the CLI and the report writer import it.
It lives in ``trainer/steering/`` beside the other torch-free pieces the dashboard imports
(``store/`` owns SQL only).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

# ------------------------------------------------------------------ inline Markdown

# Characters that Markdown (or Streamlit's :color[...], :emoji: and $math$ syntax) gives
# a meaning to inside a line. Without [ and ] no link or image can form, without < no
# HTML or autolink; & would decode entities; ! is escaped too, since a "!" written out
# right before a link we write back ("\![x](url)" parses as "!" then a link) would make it
# an image. An underscore inside a word (learning_rate) can neither open nor close emphasis
# in CommonMark: it stays as it is, readable.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]#|<>~$:&!]|(?<![^\W_])_|_(?![^\W_]))")
# What opens a block at the start of a line: a list item, a setext underline, a quote.
_LINE_START = re.compile(r"^([-+=]|\d{1,9}(?=[.)]))")


def markdown_inline(text: Any) -> str:
    """``text`` escaped so that Markdown renders it as the characters typed, nothing more
    (control characters dropped: a report is read in terminals too)."""
    lines = _MARKDOWN_SPECIAL.sub(r"\\\1", terminal_text(text)).split("\n")
    # Trailing spaces go too: two of them before a line break make a hard break.
    return "\n".join(_escape_line_start(line.rstrip(" \t")) for line in lines)


def _escape_line_start(line: str) -> str:
    line = line.lstrip(" \t")  # four spaces would start a code block
    match = _LINE_START.match(line)
    if not match:
        return line
    if match.group(1)[0].isdigit():  # "1." -> "1\." : keep the number, break the marker
        end = match.end()
        return line[:end] + "\\" + line[end:]
    return "\\" + line


def markdown_code(text: Any) -> str:
    """``text`` as one inline code span, whatever backticks it holds."""
    content = terminal_text(text, single_line=True)
    ticks = "`" * (_longest_run(content, "`") + 1)
    pad = " " if content[:1] in "` " or content[-1:] in "` " else ""
    return f"{ticks}{pad}{content}{pad}{ticks}"


def markdown_code_block(text: str, language: str = "") -> list[str]:
    """``text`` as a fenced code block (lines), its fence longer than any backtick run inside."""
    text = terminal_text(text)
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    language = re.sub(r"[^A-Za-z0-9_+-]", "", language)[:20]
    return [fence + language, *text.rstrip("\n").split("\n"), fence]


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(r) for r in runs), default=0)


# -------------------------------------------------------------- parsed Markdown

_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LINK_SCHEMES = ("http", "https")  # a link to anything else is shown as its text


def safe_markdown(text: str, heading_shift: int = 0) -> str:
    """Markdown ``text`` parsed and written back with only inert parts (see the module's notes).

    ``heading_shift`` moves headings down: a report's ``# title`` shown inside a page
    should not outshout the page's own headings.
    """
    root = SyntaxTreeNode(_PARSER.parse(terminal_text(text)))  # a report is read in terminals too
    return "\n".join(_Writer(heading_shift).blocks(root.children))


class _Writer:
    def __init__(self, heading_shift: int):
        self.heading_shift = heading_shift

    # Blocks become lines; blocks are separated by a blank line.
    def blocks(self, nodes: list[SyntaxTreeNode]) -> list[str]:
        lines: list[str] = []
        for node in nodes:
            if lines:
                lines.append("")
            lines += self.block(node)
        return lines

    def block(self, node: SyntaxTreeNode) -> list[str]:
        kind = node.type
        if kind == "paragraph":
            return self.paragraph(node)
        if kind == "heading":
            level = min(6, int(node.tag[1]) + self.heading_shift)
            return ["#" * level + " " + " ".join(self.inline(node.children[0]).split("\n"))]
        if kind in ("bullet_list", "ordered_list"):
            return self.listing(node)
        if kind == "blockquote":
            return [f"> {line}".rstrip() for line in self.blocks(node.children)]
        if kind in ("fence", "code_block"):
            return markdown_code_block(node.content, (node.info or "").split(" ")[0])
        if kind == "html_block":  # shown as the text it is
            return markdown_code_block(node.content)
        if kind == "hr":
            return ["---"]
        if kind == "table":
            return self.table(node)
        return [_escape_line_start(line) for line in markdown_inline(_plain(node)).split("\n")]  # unforeseen: text

    def paragraph(self, node: SyntaxTreeNode) -> list[str]:
        return [_escape_line_start(line) for line in self.inline(node.children[0]).split("\n")]

    def listing(self, node: SyntaxTreeNode) -> list[str]:
        number = int(node.attrs.get("start", 1))
        lines: list[str] = []
        for item in node.children:
            marker = f"{number}. " if node.type == "ordered_list" else "- "
            body = self.blocks(item.children) or [""]
            lines.append(marker + body[0])
            lines += [(" " * len(marker) + line) if line else "" for line in body[1:]]
            number += 1
        return lines

    def table(self, node: SyntaxTreeNode) -> list[str]:
        rows = [row for part in node.children for row in part.children]
        if not rows:
            return []
        cells = [[self.inline(cell.children[0], in_table=True) if cell.children else "" for cell in row.children]
                 for row in rows]
        aligns = [_ALIGN_RULE.get(str(cell.attrs.get("style", "")), "---") for cell in rows[0].children]
        lines = ["| " + " | ".join(cells[0]) + " |", "| " + " | ".join(aligns) + " |"]
        return lines + ["| " + " | ".join(row) + " |" for row in cells[1:]]

    # Inline content becomes one string; "\n" where the source had a soft line break.
    def inline(self, node: SyntaxTreeNode, in_table: bool = False) -> str:
        return "".join(self.span(child, in_table) for child in node.children)

    def span(self, node: SyntaxTreeNode, in_table: bool) -> str:
        kind = node.type
        inner: Callable[[], str] = lambda: "".join(self.span(c, in_table) for c in node.children)  # noqa: E731
        if kind == "text":
            return markdown_inline_text(node.content)
        if kind == "softbreak":
            return "\n"
        if kind == "hardbreak":
            return "\\\n"
        if kind == "code_inline":
            code = markdown_code(node.content)
            return code.replace("|", "\\|") if in_table else code  # GFM splits cells even inside code
        if kind in _WRAP:
            content = inner()
            return f"{_WRAP[kind]}{content}{_WRAP[kind]}" if content.strip() else content
        if kind == "link":
            return self.link(node, inner())
        if kind == "image":
            alt = markdown_inline_text(_plain(node))
            return f"\\[image{': ' + alt if alt else ''}\\]"
        return markdown_inline_text(node.content or _plain(node))  # html_inline and anything unforeseen: text

    @staticmethod
    def link(node: SyntaxTreeNode, text: str) -> str:
        href = str(node.attrs.get("href", ""))
        if node.markup == "autolink" or not _is_web_address(href) or not text.strip():
            return text
        # markdown-it has percent-encoded the address; parentheses would end it early.
        return f"[{text}]({href.replace('(', '%28').replace(')', '%29')})"


_WRAP = {"em": "*", "strong": "**", "s": "~~"}
_ALIGN_RULE = {"text-align:left": ":---", "text-align:right": "---:", "text-align:center": ":---:"}


def markdown_inline_text(text: str) -> str:
    """A piece of text inside a line we write: escaped, its line breaks kept for the caller."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _is_web_address(href: str) -> bool:
    try:
        parts = urlsplit(href)
    except ValueError:
        return False
    return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)


def _plain(node: SyntaxTreeNode) -> str:
    """The text a node shows, without its markup."""
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)


# ---------------------------------------------------------------------- terminal

# ESC sequences whole (CSI ... final, OSC ... BEL/ST, and two-character ones), then any
# lone C0 (but \t and \n) or C1 control, DEL, and the bidi controls that reorder a line.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"            # CSI: cursor moves, erase, colours
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (title, hyperlink), DCS, SOS, PM, APC
    r"|\x1b[@-Z\\-_]"                      # two-character sequences
    r"|\x9b[0-?]*[ -/]*[@-~]"              # CSI as one C1 character
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC/DCS/SOS/PM/APC as C1
)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: Any, single_line: bool = False) -> str:
    """``text`` safe to print: no escape sequence, no control character but tab and newline.

    ``single_line`` turns line breaks into spaces too: a name must not fake a line of its own.
    """
    text = _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", str(text)))
    return " ".join(text.split("\n")) if single_line else text


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def terminal_json(value: Any, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **options)`` with every control character escaped
    (json escapes C0 itself; C1, DEL and bidi controls become ``\\uXXXX``): the same data,
    inert in a terminal."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
