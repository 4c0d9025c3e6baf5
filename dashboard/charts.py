"""Store DataFrames -> Plotly figures. Pure functions, no Streamlit: testable alone.

Metrics come in the store's long form (run_id, epoch, split, name, value).

No fonts or template are fixed here, and colours only where runs must be
told apart: traces take the template's colorway, so inside Streamlit (``st.plotly_chart(theme="streamlit")``) they
follow the user's light or dark theme, and on their own they use Plotly's
default. Backgrounds are transparent and the config-change markers a neutral
grey for the same reason: both read on a light and on a dark page.
"""

from __future__ import annotations

import html
import math
from typing import Mapping

import pandas as pd
import plotly.colors
import plotly.graph_objects as go

SPLIT_TITLES = {"train": "Training", "val": "Validation", "": ""}
NAME_TITLES = {
    "loss": "loss",
    "accuracy": "accuracy",
    "lr": "learning rate",
    "epoch_seconds": "seconds per epoch",
    "samples_per_sec": "samples per second",
}
MARKER_GREY = "rgba(128, 128, 128, 0.8)"  # visible on white and on near-black
# Runs side by side need distinct hues; Streamlit's colorway starts with two
# blues. Plotly's qualitative palette reads on light and on dark pages.
RUN_COLOURS = plotly.colors.qualitative.Plotly
LR_HEIGHT_PX = 340  # the lr is mostly flat steps: less height than the loss curves
MAX_LR_TICKS = 8  # beyond this many distinct rates, labels at each would overlap


def metric_title(split: str, name: str) -> str:
    """``("val", "accuracy")`` -> ``"Validation accuracy"``; ``("", "lr")`` -> ``"Learning rate"``."""
    words = " ".join(w for w in (SPLIT_TITLES.get(split, split), NAME_TITLES.get(name, name)) if w)
    return words[:1].upper() + words[1:]


def _select(metrics: pd.DataFrame, split: str, name: str) -> pd.DataFrame:
    rows = metrics[(metrics["split"] == split) & (metrics["name"] == name)]
    return rows.sort_values("epoch")


def _layout(fig: go.Figure, *, title: str, y_title: str, last_epoch: int) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title="epoch",
        yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        margin=dict(l=10, r=10, t=70, b=10),
        hovermode="x unified",
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        # A constant uirevision keeps the user's zoom and hidden traces when the
        # live page redraws the figure with one more epoch.
        uirevision="keep",
    )
    # Epochs are whole numbers: never let Plotly put a tick at epoch 1.5.
    fig.update_xaxes(tickformat="d", tick0=1, dtick=max(1, math.ceil(last_epoch / 12)))
    return fig


def _last_epoch(frame: pd.DataFrame) -> int:
    return int(frame["epoch"].max()) if not frame.empty else 1


def train_val_figure(metrics: pd.DataFrame, name: str) -> go.Figure:
    """Training (markers) and validation (line) values of ``name`` per epoch, as in seed 004."""
    fig = go.Figure()
    for split, mode in (("train", "markers"), ("val", "lines")):
        rows = _select(metrics, split, name)
        if mode == "lines" and len(rows) == 1:
            mode = "lines+markers"  # a line through one point draws nothing
        fig.add_scatter(
            x=rows["epoch"], y=rows["value"], mode=mode, name=metric_title(split, name),
            hovertemplate="%{y:.4f}",
        )
    title = f"Training and validation {NAME_TITLES.get(name, name)}"
    return _layout(fig, title=title, y_title=NAME_TITLES.get(name, name),
                   last_epoch=_last_epoch(metrics[metrics["name"] == name]))


def _change_hover(version: Mapping) -> str:
    """Hover text of one config version; user text is escaped (Plotly reads tags in it)."""
    lines = [f"<b>v{version['version']}</b> from {html.escape(version['source'])}, epoch {version['epoch']}"]
    lines += [
        html.escape(f"{key}: {old!r} → {new!r}") for key, (old, new) in version["diff"].items()
    ]
    if version["reason"]:
        lines.append(html.escape(f"reason: {version['reason']}"))
    return "<br>".join(lines)


def lr_figure(metrics: pd.DataFrame, versions: pd.DataFrame) -> go.Figure:
    """Learning rate per epoch, with a dotted line where each later config version took effect."""
    lr = _select(metrics, "", "lr")
    fig = go.Figure()
    # The lr holds for a whole epoch, so draw steps rather than slopes.
    fig.add_scatter(x=lr["epoch"], y=lr["value"], mode="lines+markers", line_shape="hv",
                    name="learning rate", hovertemplate="%{y:.3~g}")
    # Version 1 is the config the run started with; later versions are changes.
    changes = [] if versions.empty else versions[versions["version"] > 1].to_dict("records")
    for change in changes:
        fig.add_vline(
            x=change["epoch"], line_dash="dot", line_color=MARKER_GREY,
            annotation_text=f"v{change['version']} {change['source']}", annotation_position="top",
            annotation_hovertext=_change_hover(change), annotation_font_color=MARKER_GREY,
        )
    if changes:
        # Markers at the lr each version set, so hovering the curve shows the change too.
        fig.add_scatter(
            x=[c["epoch"] for c in changes], y=[c["config"].get("learning_rate") for c in changes],
            mode="markers", name="config change", marker=dict(symbol="diamond", size=11, color=MARKER_GREY),
            hovertext=[_change_hover(c) for c in changes], hoverinfo="text",
        )
    last_epoch = max([_last_epoch(lr)] + [int(c["epoch"]) for c in changes])
    _layout(fig, title="Learning rate and config changes", y_title="learning rate (log scale)",
            last_epoch=last_epoch)
    fig.update_layout(height=LR_HEIGHT_PX)
    # Learning rates are changed by factors (÷10, ×3): on a log axis each change is a
    # step of its true size. Ticks sit at the rates actually used, so each step of
    # the curve is labelled with its value; the padding keeps a constant lr off the edges.
    rates = set(lr["value"]) | {c["config"].get("learning_rate") for c in changes}
    used = sorted(r for r in rates if r is not None and r > 0)
    fig.update_yaxes(type="log", tickformat="~g")
    if used:
        fig.update_yaxes(range=[math.log10(used[0]) - 0.3, math.log10(used[-1]) + 0.3])
        if len(used) <= MAX_LR_TICKS:
            fig.update_yaxes(tickvals=used)
    return fig


def compare_figure(metrics: pd.DataFrame, split: str, name: str, labels: Mapping[str, str]) -> go.Figure:
    """One line per run (in ``labels``' order) of one metric over epochs."""
    fig = go.Figure()
    for index, (run_id, label) in enumerate(labels.items()):
        rows = _select(metrics[metrics["run_id"] == run_id], split, name)
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        fig.add_scatter(x=rows["epoch"], y=rows["value"], mode="lines+markers", name=label,
                        line_color=colour, marker_color=colour, hovertemplate="%{y:.4~g}")
    title = metric_title(split, name)
    selected = metrics[(metrics["split"] == split) & (metrics["name"] == name)]
    return _layout(fig, title=f"{title} by run", y_title=title[:1].lower() + title[1:],
                   last_epoch=_last_epoch(selected))
