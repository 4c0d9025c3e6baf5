"""Text cut to fit a label: a tick, a legend entry, a table header, a choice.

Pure functions, no Streamlit. Widths are counted in columns of a proportional UI
font, roughly: a Chinese character or an emoji takes two, so a label in any script
is cut where it would take the same room.
"""

from __future__ import annotations

import html
import unicodedata


def _columns(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def text_columns(text: str) -> int:
    """How many columns ``text`` takes in a proportional UI font, roughly: wide scripts count two."""
    return sum(_columns(char) for char in text)


def short_label(name: object, columns: int) -> str:
    """``name`` cut to about ``columns`` columns with an ellipsis, as plain text."""
    text = str(name)
    if text_columns(text) <= columns:
        return text
    kept, used = [], 1  # the ellipsis takes one
    for char in text:
        used += _columns(char)
        if used > columns:
            break
        kept.append(char)
    return "".join(kept).rstrip() + "…"


def plot_text(text: object) -> str:
    """User text (a run, class or metric name, a reason) for a Plotly figure: a trace name, tick,
    title, annotation or hover. Plotly draws a few HTML tags in any of them (``<a href>`` becomes a
    live link, ``<span style>`` text of any size), so ``<``, ``>`` and ``&`` are escaped; quotes
    stay, as Plotly would show ``&quot;`` as it is."""
    return html.escape(str(text), quote=False)


def plot_label(name: object, columns: int) -> str:
    """``name`` cut to ``columns`` (``short_label``), then escaped for Plotly (``plot_text``)."""
    return plot_text(short_label(name, columns))
